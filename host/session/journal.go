package session

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// The file store keeps its sessions in one append-only file, the journal,
// <storage.path>/sessions/journal, mode 0600 in a 0700 directory. Each
// sign-in, renewal and sign-out appends one record and syncs the file once
// (fdatasync): no new inode and no directory sync per write, which on a
// disk cost more than the rest of a sign-in.
//
// Format (version 1), integers little-endian:
//
//	header:  "SPAUTHSJ" (8 bytes of magic), u32 format version
//	record:  u32 payload length
//	         u32 CRC-32C (Castagnoli) of the length, op, key and payload
//	         op byte: 1 put, 2 delete
//	         32-byte session Key
//	         payload: for a put, the session as JSON (sessionFile, what a
//	         session file of the one-file-per-session layout held); for a
//	         delete, nothing
//
// A key's last record wins: a put stores the session (replay skips it when
// it has expired), a delete removes it. Replay reads records one after the
// other from the header and stops at the first that is short, too long
// (over maxPayload), of an unknown op or fails its CRC: what follows is the
// torn tail of a write a crash interrupted. A store that opens the journal
// (or finds such a tail while it holds the lock) truncates it away, and
// syncs, before it appends, so new records never follow garbage.
//
// Sessions hold attacker-influenced text (ID token claims, names, e-mail
// addresses), which cannot forge a record:
//   - Replay never searches for records: a record starts where the one
//     before it ended, at a length the store wrote, and replay stops for
//     good at the first bad record, so a payload's bytes are only ever read
//     as payload.
//   - Were replay ever misaligned into a payload, the payload is JSON as
//     encoding/json writes it, which escapes every byte below 0x20 and
//     writes no insignificant whitespace: every payload byte is at least
//     0x20, so the four bytes read as a length are at least 0x20202020,
//     far over maxPayload, and no payload byte is a valid op (1 or 2).
//   - And the CRC over length, op, key and payload must match as well.
//
// TestJournalForgedRecordInSession and FuzzJournalReplay check this.
const (
	journalName    = "journal"
	journalTemp    = "journal.tmp"
	journalMagic   = "SPAUTHSJ"
	journalVersion = 1
	journalHdrLen  = len(journalMagic) + 4
	recordHdrLen   = 4 + 4 + 1 + len(Key{})
	// maxPayload bounds a record's payload; a session is a few KiB.
	maxPayload = 1 << 20
)

// Journal record ops.
const (
	opPut    byte = 1
	opDelete byte = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errNotJournal is the error of opening a file that is not a journal (or
// of a format version this build does not read).
var errNotJournal = errors.New("not a session journal of a version this daemon reads")

// journalHeader returns the file header.
func journalHeader() []byte {
	h := make([]byte, journalHdrLen)
	copy(h, journalMagic)
	binary.LittleEndian.PutUint32(h[len(journalMagic):], journalVersion)
	return h
}

// checkHeader checks the start of a journal file. It reports a file that
// holds only a prefix of the header (a crash while creating the journal,
// including an empty file) as partial, which the store rewrites.
func checkHeader(data []byte) (partial bool, err error) {
	h := journalHeader()
	if len(data) < len(h) {
		if string(data) == string(h[:len(data)]) {
			return true, nil
		}
		return false, errNotJournal
	}
	if string(data[:len(h)]) != string(h) {
		return false, errNotJournal
	}
	return false, nil
}

// appendRecord appends the record (op, key, payload) to dst.
func appendRecord(dst []byte, op byte, key Key, payload []byte) []byte {
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, 0, 0, 0, 0) // the CRC, filled below
	dst = append(dst, op)
	dst = append(dst, key[:]...)
	dst = append(dst, payload...)
	rec := dst[start:]
	binary.LittleEndian.PutUint32(rec[4:8], recordCRC(rec))
	return dst
}

// recordCRC is the CRC of a whole record: everything but the CRC field.
func recordCRC(rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, rec[:4])
	return crc32.Update(c, castagnoli, rec[8:])
}

// record is one record read back; payload aliases the data read.
type record struct {
	op      byte
	crc     uint32
	key     Key
	payload []byte
}

// size is the record's length in the file.
func (r record) size() int64 { return int64(recordHdrLen + len(r.payload)) }

// scanRecords reads the records at the start of data, which must be at a
// record boundary, and calls fn for each good one in order. It returns the
// length of the good records: data[good:] is empty, or a torn or corrupt
// tail. It allocates nothing; lengths are checked against maxPayload and
// what data holds before use.
func scanRecords(data []byte, fn func(record)) (good int) {
	for {
		rest := data[good:]
		if len(rest) < recordHdrLen {
			return good
		}
		n := binary.LittleEndian.Uint32(rest[:4])
		if n > maxPayload || uint64(len(rest)-recordHdrLen) < uint64(n) {
			return good
		}
		rec := rest[:recordHdrLen+int(n)]
		op := rec[8]
		if (op != opPut && op != opDelete) || (op == opDelete && n != 0) ||
			binary.LittleEndian.Uint32(rec[4:8]) != recordCRC(rec) {
			return good
		}
		r := record{op: op, crc: binary.LittleEndian.Uint32(rec[4:8]), payload: rec[recordHdrLen:]}
		copy(r.key[:], rec[9:recordHdrLen])
		fn(r)
		good += len(rec)
	}
}

// encodePut is a put record's payload for sess.
func encodePut(sess *Session) ([]byte, error) {
	data, err := json.Marshal(sessionFile{Version: fileVersion, Session: sess})
	if err != nil {
		return nil, fmt.Errorf("session: encoding session: %w", err)
	}
	if len(data) > maxPayload {
		return nil, fmt.Errorf("session: encoded session is %d bytes, over the store's limit of %d", len(data), maxPayload)
	}
	return data, nil
}

// loadChunk is how much of the journal a load reads at a time: a load
// never holds the whole file, which for 10,000 sessions is tens of MB that
// the daemon's heap would keep long after its start.
const loadChunk = 1 << 20

// scanFile reads the records of r from off up to size, loadChunk at a time
// (more for a record larger than that), and calls fn with each good one
// and its offset; rec.payload is valid only during the call. It returns the
// end of the good records: size, or where a torn or bad record starts.
func scanFile(r io.ReaderAt, off, size int64, fn func(rec record, at int64)) (int64, error) {
	buf := make([]byte, min(loadChunk, max(size-off, 0)))
	for off < size {
		n := int(min(int64(len(buf)), size-off))
		if _, err := r.ReadAt(buf[:n], off); err != nil {
			return off, err
		}
		at := off
		good := scanRecords(buf[:n], func(rec record) {
			fn(rec, at)
			at += rec.size()
		})
		if good > 0 {
			off += int64(good)
			continue
		}
		// The record at off is bad or torn, or longer than buf.
		if n < recordHdrLen {
			return off, nil
		}
		need := int64(recordHdrLen) + int64(binary.LittleEndian.Uint32(buf[:4]))
		if need <= int64(n) || need > int64(recordHdrLen+maxPayload) || need > size-off {
			return off, nil
		}
		buf = make([]byte, need)
	}
	return off, nil
}

// loaded is a key's last record in the journal, its session decoded.
type loaded struct {
	key  Key
	op   byte
	crc  uint32
	at   int64 // offset in the file
	size int64 // of the record
	sess *Session
	why  string // for a put that did not decode: a reason safe to log
}

// header is the header of l's record as the file holds it.
func (l loaded) header() []byte {
	h := binary.LittleEndian.AppendUint32(make([]byte, 0, recordHdrLen), uint32(l.size-int64(recordHdrLen)))
	h = binary.LittleEndian.AppendUint32(h, l.crc)
	h = append(h, l.op)
	return append(h, l.key[:]...)
}

// loadJournal reads the records of the journal r, whose first size bytes
// the caller read the header of, in two passes of loadChunk reads: the
// first finds each key's last record (checking every record), the second
// decodes the puts among them with up to GOMAXPROCS goroutines, as a
// daemon's start waits for it. It returns them in order of their keys'
// first records, and the end of the good records.
func loadJournal(r io.ReaderAt, size int64) ([]loaded, int64, error) {
	var last []loaded
	index := map[Key]int{}
	end, err := scanFile(r, int64(journalHdrLen), size, func(rec record, at int64) {
		l := loaded{key: rec.key, op: rec.op, crc: rec.crc, at: at, size: rec.size()}
		if i, ok := index[rec.key]; ok {
			last[i] = l
			return
		}
		index[rec.key] = len(last)
		last = append(last, l)
	})
	if err != nil {
		return nil, 0, err
	}
	return last, end, decodeLoaded(r, last)
}

// decodeLoaded decodes the puts of last, reading them back in batches of
// neighbours of up to loadChunk bytes (a put larger than that alone).
func decodeLoaded(r io.ReaderAt, last []loaded) error {
	var puts []int
	for i, l := range last {
		if l.op == opPut {
			puts = append(puts, i)
		}
	}
	slices.SortFunc(puts, func(a, b int) int { return cmp.Compare(last[a].at, last[b].at) })
	var batches [][]int
	for lo := 0; lo < len(puts); {
		hi := lo + 1
		for hi < len(puts) && last[puts[hi]].at+last[puts[hi]].size-last[puts[lo]].at <= loadChunk {
			hi++
		}
		batches = append(batches, puts[lo:hi])
		lo = hi
	}
	var (
		next    atomic.Int64
		errOnce sync.Once
		first   error
	)
	work := func() {
		var buf []byte
		for {
			b := int(next.Add(1) - 1)
			if b >= len(batches) {
				return
			}
			batch := batches[b]
			from := last[batch[0]].at
			n := last[batch[len(batch)-1]].at + last[batch[len(batch)-1]].size - from
			if int64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			if _, err := r.ReadAt(buf[:n], from); err != nil {
				errOnce.Do(func() { first = err })
				return
			}
			for _, i := range batch {
				l := &last[i]
				payload := buf[l.at-from+int64(recordHdrLen) : l.at-from+l.size]
				if l.sess, l.why = decodeSessionFile(payload, nil); l.sess != nil {
					l.sess.intern()
				}
			}
		}
	}
	inParallel(len(batches), work)
	return first
}
