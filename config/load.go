package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// Option changes how Load reads the environment.
type Option func(*loadOptions)

// loadOptions are Load's knobs; tests inject the environment through them.
type loadOptions struct {
	// LookupEnv resolves ${VAR} (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Environ lists the variables scanned for SPECTROAUTH_ overrides (default os.Environ).
	Environ func() []string
}

// WithLookupEnv resolves ${VAR} references with fn instead of os.LookupEnv.
func WithLookupEnv(fn func(string) (string, bool)) Option {
	return func(o *loadOptions) { o.LookupEnv = fn }
}

// WithEnviron takes the SPECTROAUTH_ overrides from fn ("NAME=value" entries)
// instead of os.Environ.
func WithEnviron(fn func() []string) Option {
	return func(o *loadOptions) { o.Environ = fn }
}

// WithEnv replaces the whole process environment, for both ${VAR} and
// SPECTROAUTH_ overrides, with env. Handy in tests.
func WithEnv(env map[string]string) Option {
	return func(o *loadOptions) {
		o.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		o.Environ = func() []string {
			out := make([]string, 0, len(env))
			for k, v := range env {
				out = append(out, k+"="+v)
			}
			return out
		}
	}
}

// Load reads the configuration (see the package documentation for the layers)
// from the YAML file at path, or from the embedded development configuration
// when path is "", and validates it. A returned error is a [ValidationErrors]
// when the problems are with keys or values, each naming its key path.
func Load(path string, opts ...Option) (*Config, error) {
	c, err := LoadUnvalidated(path, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadUnvalidated is Load without Validate: the layers are merged, variables
// substituted, keys decoded strictly and defaults applied, but values are not
// checked. For tools that want to show a configuration before judging it.
func LoadUnvalidated(path string, opts ...Option) (*Config, error) {
	o := loadOptions{LookupEnv: os.LookupEnv, Environ: os.Environ}
	for _, opt := range opts {
		opt(&o)
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.Environ == nil {
		o.Environ = os.Environ
	}
	merge := koanf.WithMergeFunc(mergeLayer)
	k := koanf.New(".")

	defaults, err := defaultsMap()
	if err != nil {
		return nil, fmt.Errorf("config: encoding the defaults: %w", err)
	}
	if err := k.Load(confmap.Provider(defaults, ""), nil, merge); err != nil {
		return nil, fmt.Errorf("config: loading the defaults: %w", err)
	}
	if path != "" {
		if err := k.Load(file.Provider(path), yaml.Parser(), merge); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	} else if err := k.Load(bytesProvider(devConfig), yaml.Parser(), merge); err != nil {
		return nil, fmt.Errorf("config: the embedded development configuration: %w", err)
	}

	var problems ValidationErrors
	mapper := &envMapper{loaded: k.Raw(), seen: map[string]string{}}
	err = k.Load(env.Provider(envDelim, env.Opt{
		Prefix:        EnvPrefix,
		TransformFunc: mapper.transform,
		EnvironFunc:   o.Environ,
	}), nil, merge)
	problems = append(problems, mapper.errs...)
	var listErrs ValidationErrors
	if errors.As(err, &listErrs) {
		problems = append(problems, listErrs...)
	} else if err != nil {
		return nil, fmt.Errorf("config: environment overrides: %w", err)
	}

	raw := k.Raw()
	origins := map[string][]string{}
	problems = append(problems, substitute(raw, o.LookupEnv, origins)...)

	c, decodeProblems := decode(raw)
	problems = append(problems, decodeProblems...)
	if len(problems) > 0 {
		problems.sortByPath()
		return nil, problems
	}
	c.origins = origins
	c.applyDefaults(raw)
	return c, nil
}

// defaultsMap is Defaults() as a koanf layer.
func defaultsMap() (map[string]any, error) {
	node, _ := dumper{decodeOnly: true}.node(reflect.ValueOf(Defaults()).Elem(), "", false)
	m := map[string]any{}
	if err := node.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// bytesProvider is a koanf.Provider of in-memory YAML.
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }

func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytesProvider needs a parser")
}

// decode unmarshals the merged, substituted map into a Config through koanf,
// strictly: keys must match the schema exactly and unknown keys are errors. The
// free-form maps (options, config) accept any keys because they are maps.
func decode(raw map[string]any) (*Config, ValidationErrors) {
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(raw, ""), nil); err != nil {
		return nil, ValidationErrors{{Message: "loading the merged configuration: " + err.Error()}}
	}
	c := &Config{}
	err := k.UnmarshalWithConf("", c, koanf.UnmarshalConf{
		Tag: "koanf",
		DecoderConfig: &mapstructure.DecoderConfig{
			DecodeHook:       mapstructure.ComposeDecodeHookFunc(durationHook, listHook),
			WeaklyTypedInput: true,
			ErrorUnused:      true,
			MatchName:        func(mapKey, fieldName string) bool { return mapKey == fieldName },
		},
	})
	if err != nil {
		problems := translateDecodeError(err)
		if len(problems) == 0 {
			// Never err.Error() itself: a decoder message could quote a value.
			problems.add("", "the configuration cannot be decoded")
		}
		return nil, problems
	}
	return c, nil
}

// hookError is a decode hook's complaint; its message is safe to show.
type hookError string

func (e hookError) Error() string { return string(e) }

// durationHook decodes durations: Go syntax (90s, 1h30m) plus whole days (7d). A
// bare number other than 0 is refused: its unit would be a guess.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	v := reflect.ValueOf(data)
	switch from.Kind() {
	case reflect.String:
		d, ok := parseDuration(v.String())
		if !ok {
			return nil, hookError("expected a duration such as 90s, 5m, 1h or 7d")
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if v.IsZero() {
			return time.Duration(0), nil
		}
		return nil, hookError("expected a duration with a unit, such as 90s, 5m, 1h or 7d, not a bare number")
	}
	return data, nil
}

// parseDuration parses Go duration syntax, optionally led by whole days: 7d, 1d12h.
func parseDuration(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	sign := time.Duration(1)
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		sign, s = -1, rest
	}
	var days time.Duration
	if before, after, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(before, 10, 16)
		if err != nil {
			return 0, false
		}
		days = time.Duration(n) * 24 * time.Hour
		if s = after; s == "" {
			return sign * days, true
		}
	}
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, false
	}
	return sign * (days + d), true
}

// listHook refuses a mapping where a list belongs (rather than wrapping it in a
// one-element list), and lets a single string fill a list of strings, split at
// commas (environment variables have no other way to carry a list).
func listHook(from, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.Slice {
		return data, nil
	}
	if from.Kind() == reflect.Map {
		return nil, hookError("expected a list, got a mapping")
	}
	if from.Kind() != reflect.String || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	var out []string
	for _, part := range strings.Split(reflect.ValueOf(data).String(), ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out, nil
}

// translateDecodeError turns mapstructure's errors into FieldErrors with user
// key paths and messages that describe types, never values.
func translateDecodeError(err error) ValidationErrors {
	var out ValidationErrors
	var walk func(error)
	walk = func(err error) {
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				walk(e)
			}
			return
		}
		de, ok := err.(*mapstructure.DecodeError)
		if !ok {
			if inner := errors.Unwrap(err); inner != nil {
				walk(inner)
			} else {
				out.add("", "cannot decode the configuration")
			}
			return
		}
		inner := de.Unwrap()
		if _, ok := inner.(interface{ Unwrap() []error }); ok {
			walk(inner)
			return
		}
		path, t := pathOfDecoderName(de.Name())
		msg := inner.Error()
		if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
			for _, key := range strings.Split(keys, ", ") {
				m := "unknown key"
				if s := suggestKey(deref(t), key); s != "" {
					m += fmt.Sprintf(" (did you mean %s?)", s)
				}
				out.add(joinKey(path, key), m)
			}
			return
		}
		var he hookError
		var ute *mapstructure.UnconvertibleTypeError
		var pe *mapstructure.ParseError
		switch {
		case errors.As(inner, &he):
			out.add(path, string(he))
		case errors.As(inner, &ute):
			out.add(path, fmt.Sprintf("expected %s, got %s", describeType(t), describeValue(ute.Value)))
		case errors.As(inner, &pe):
			out.add(path, fmt.Sprintf("expected %s", describeType(t)))
		default:
			out.add(path, fmt.Sprintf("expected %s", describeType(t)))
		}
	}
	walk(err)
	return out
}

// pathOfDecoderName turns a mapstructure field name such as
// auth.providers.spectrocloud[production].signIn.resolvers[0] into the user's key
// path (auth.providers.spectrocloud.production.signIn.resolvers[0]) and the
// schema type found there, by walking the schema.
func pathOfDecoderName(name string) (string, reflect.Type) {
	t := configType
	path := ""
	for name != "" {
		t = deref(t)
		switch name[0] {
		case '.':
			name = name[1:]
			continue
		case '[':
			end := strings.IndexByte(name, ']')
			if end < 0 {
				return joinKey(path, name), anyType
			}
			key := name[1:end]
			name = name[end+1:]
			switch t.Kind() {
			case reflect.Slice, reflect.Array:
				i, _ := strconv.Atoi(key)
				path, t = joinIndex(path, i), t.Elem()
			case reflect.Map:
				path, t = joinKey(path, key), t.Elem()
			default:
				path, t = joinKey(path, key), anyType
			}
			continue
		}
		end := strings.IndexAny(name, ".[")
		if end < 0 {
			end = len(name)
		}
		key := name[:end]
		name = name[end:]
		path = joinKey(path, key)
		next := anyType
		if t.Kind() == reflect.Struct {
			if f, ok := fieldByKey(t, key, false); ok {
				next = f.Type
			}
		}
		t = next
	}
	return path, t
}
