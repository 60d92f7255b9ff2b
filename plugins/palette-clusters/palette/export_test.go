package palette

// SetPacing replaces the source's limits and retries (tests run them
// faster than SpectroCloud's).
func (s *Source) SetPacing(l Limits, r Retry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Limits, s.cfg.Retry = l, r
	s.client = NewClient(s.cfg)
}
