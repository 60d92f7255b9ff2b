package wire

import (
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	pluginv1 "github.com/spectroauth/spectroauth/sdk/internal/pluginv1"
)

func TestToStruct(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]any
		want    map[string]any
		wantErr bool
	}{
		{name: "nil", in: nil, want: nil},
		{name: "plain JSON", in: map[string]any{"a": "b", "n": 1, "l": []any{true}}, want: map[string]any{"a": "b", "n": float64(1), "l": []any{true}}},
		{name: "typed values", in: map[string]any{"l": []string{"x"}, "m": map[string]string{"k": "v"}}, want: map[string]any{"l": []any{"x"}, "m": map[string]any{"k": "v"}}},
		{name: "not JSON", in: map[string]any{"f": func() {}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ToStruct(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := FromStruct(s); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("round trip = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestTimestamps(t *testing.T) {
	if ToTimestamp(time.Time{}) != nil || !FromTimestamp(nil).IsZero() {
		t.Error("the zero time does not map to nil")
	}
	now := time.Now()
	if got := FromTimestamp(ToTimestamp(now)); !got.Equal(now) {
		t.Errorf("round trip = %v, want %v", got, now)
	}
}

func TestCapabilities(t *testing.T) {
	for name, want := range map[string]pluginv1.Capability{
		"RESOLVER":         pluginv1.Capability_CAPABILITY_RESOLVER,
		"CLUSTER_STRATEGY": pluginv1.Capability_CAPABILITY_CLUSTER_STRATEGY,
		"VALIDATE_OPTIONS": pluginv1.Capability_CAPABILITY_VALIDATE_OPTIONS,
		"NOPE":             pluginv1.Capability_CAPABILITY_UNSPECIFIED,
	} {
		if got := CapabilityToProto(name); got != want {
			t.Errorf("CapabilityToProto(%q) = %v, want %v", name, got, want)
		}
	}
	if CapabilityName(pluginv1.Capability_CAPABILITY_CLUSTER_SOURCE) != "CLUSTER_SOURCE" || CapabilityName(99) != "" || CapabilityName(0) != "" {
		t.Error("CapabilityName")
	}
}

func TestTruncateMessage(t *testing.T) {
	if TruncateMessage("short") != "short" {
		t.Error("short message changed")
	}
	long := strings.Repeat("é", MaxErrorMessage) // two bytes each
	got := TruncateMessage(long)
	if len(got) > MaxErrorMessage+len("… (truncated)") || !utf8.ValidString(got) || !strings.HasSuffix(got, "(truncated)") {
		t.Errorf("TruncateMessage gave %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}

func TestClusterRoundTrip(t *testing.T) {
	c := Cluster{
		Name: "a", Server: "https://a:6443", CAData: []byte("pem"), Strategy: "oidc",
		Labels: map[string]string{"env": "prod"}, Annotations: map[string]string{"n": "v"},
		Title: "A", Description: "the A cluster",
	}
	if got := ClusterFromProto(ClusterToProto(c)); !reflect.DeepEqual(got, c) {
		t.Errorf("round trip = %+v, want %+v", got, c)
	}
	if got := ClusterFromProto(nil); !reflect.DeepEqual(got, Cluster{}) {
		t.Errorf("ClusterFromProto(nil) = %+v", got)
	}
}
