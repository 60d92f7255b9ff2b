// Package wire holds the conversions between plain Go values and protobuf
// well-known types that both ends of the plugin protocol need: the plugin
// side (package sdk) and the host side (package sdk/pluginclient).
package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pluginv1 "github.com/spectroauth/spectroauth/sdk/internal/pluginv1"
)

// ToStruct converts a JSON-like map to a Struct. Values that structpb does not
// take directly (typed slices and maps, structs, time.Time) are converted
// through their JSON encoding. A nil or empty map gives nil.
func ToStruct(m map[string]any) (*structpb.Struct, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if s, err := structpb.NewStruct(m); err == nil {
		return s, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	return structpb.NewStruct(generic)
}

// FromStruct converts a Struct to a map. JSON numbers become float64. A nil
// or empty Struct gives a nil map.
func FromStruct(s *structpb.Struct) map[string]any {
	if len(s.GetFields()) == 0 {
		return nil
	}
	return s.AsMap()
}

// ToTimestamp converts t; the zero time gives nil.
func ToTimestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// FromTimestamp converts ts; nil gives the zero time.
func FromTimestamp(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

const (
	capabilityPrefix = "CAPABILITY_"
	tokenPrefix      = "TOKEN_"
)

// CapabilityToProto maps a capability name (sdk.Capability) to the protocol's
// enum value, which is the name prefixed with CAPABILITY_. Unknown names give
// CAPABILITY_UNSPECIFIED.
func CapabilityToProto(name string) pluginv1.Capability {
	return pluginv1.Capability(pluginv1.Capability_value[capabilityPrefix+name])
}

// CapabilityName maps an enum value back to its capability name; a value
// this revision of the protocol does not know gives "".
func CapabilityName(c pluginv1.Capability) string {
	return enumName(c, pluginv1.Capability_name, capabilityPrefix)
}

// TokenToProto maps a token name (sdk.Token) to the protocol's enum value,
// the name prefixed with TOKEN_. Unknown names give TOKEN_UNSPECIFIED.
func TokenToProto(name string) pluginv1.Token {
	return pluginv1.Token(pluginv1.Token_value[tokenPrefix+name])
}

// TokenName maps an enum value back to its token name; a value this revision
// of the protocol does not know gives "".
func TokenName(t pluginv1.Token) string {
	return enumName(t, pluginv1.Token_name, tokenPrefix)
}

// enumName is the name of the enum value v without prefix, or "" for the
// zero value (UNSPECIFIED) and values not in names.
func enumName[E ~int32](v E, names map[int32]string, prefix string) string {
	name, known := names[int32(v)]
	if !known || v == 0 {
		return ""
	}
	return strings.TrimPrefix(name, prefix)
}

// MaxErrorMessage bounds the error messages that cross the wire, in bytes: a
// plugin error quoting a huge input must not blow up the status trailer or
// the daemon's log.
const MaxErrorMessage = 4 << 10

// TruncateMessage cuts msg to MaxErrorMessage bytes, on a rune boundary.
func TruncateMessage(msg string) string {
	if len(msg) <= MaxErrorMessage {
		return msg
	}
	cut := MaxErrorMessage
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "… (truncated)"
}

// Cluster has exactly the fields of sdk.Cluster, which this package cannot
// import (sdk imports it): both ends convert with wire.Cluster(c) and
// sdk.Cluster(w), which stops compiling the day the two differ, so that the
// one converter pair below stays complete.
type Cluster struct {
	Name        string
	Server      string
	CAData      []byte
	Strategy    string
	Labels      map[string]string
	Annotations map[string]string
	Title       string
	Description string
}

// ClusterToProto converts c to its message.
func ClusterToProto(c Cluster) *pluginv1.Cluster {
	return &pluginv1.Cluster{
		Name:        c.Name,
		Server:      c.Server,
		CaData:      c.CAData,
		Strategy:    c.Strategy,
		Labels:      c.Labels,
		Annotations: c.Annotations,
		Title:       c.Title,
		Description: c.Description,
	}
}

// ClusterFromProto converts a message to a Cluster; nil gives the zero one.
func ClusterFromProto(c *pluginv1.Cluster) Cluster {
	return Cluster{
		Name:        c.GetName(),
		Server:      c.GetServer(),
		CAData:      c.GetCaData(),
		Strategy:    c.GetStrategy(),
		Labels:      c.GetLabels(),
		Annotations: c.GetAnnotations(),
		Title:       c.GetTitle(),
		Description: c.GetDescription(),
	}
}
