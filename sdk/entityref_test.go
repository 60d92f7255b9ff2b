package sdk

import (
	"strings"
	"testing"
)

func TestParseEntityRef(t *testing.T) {
	tests := []struct {
		ref     string
		want    EntityRef
		canon   string
		wantErr string
	}{
		{ref: "user:default/jdoe", want: EntityRef{"user", "default", "jdoe"}, canon: "user:default/jdoe"},
		{ref: "User:default/JDoe", want: EntityRef{"User", "default", "JDoe"}, canon: "user:default/JDoe"},
		{ref: "group:team-ns/a.b_c-d9", want: EntityRef{"group", "team-ns", "a.b_c-d9"}, canon: "group:team-ns/a.b_c-d9"},
		{ref: "", wantErr: "has no kind"},
		{ref: "jdoe", wantErr: "has no kind"},
		{ref: "user:jdoe", wantErr: "has no namespace"},
		{ref: "user:Default/jdoe", wantErr: "namespace"},
		{ref: "user:default/", wantErr: "name is empty"},
		{ref: ":default/jdoe", wantErr: "kind is empty"},
		{ref: "user:default/a--b", wantErr: "name"},
		{ref: "user:default/-a", wantErr: "name"},
		{ref: "user:default/a/b", wantErr: "name"},
		{ref: "us er:default/x", wantErr: "kind"},
		{ref: "9user:default/x", wantErr: "kind"},
		{ref: "user:default:x/y", wantErr: "namespace"},
		{ref: "user:default/" + strings.Repeat("a", 64), wantErr: "longer than 63"},
		{ref: "user:default/" + strings.Repeat("a", 300), wantErr: "longer than 256"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := ParseEntityRef(tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseEntityRef(%q) = %v, %v; want error containing %q", tt.ref, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseEntityRef(%q) = %#v, %v; want %#v", tt.ref, got, err, tt.want)
			}
			if got.String() != tt.canon {
				t.Errorf("String() = %q, want %q", got.String(), tt.canon)
			}
		})
	}
}

func TestParseEntityRefDefaults(t *testing.T) {
	tests := []struct{ ref, kind, ns, want, wantErr string }{
		{ref: "jdoe", kind: "user", ns: "default", want: "user:default/jdoe"},
		{ref: "group:team", kind: "user", ns: "default", want: "group:default/team"},
		{ref: "other/jdoe", kind: "user", ns: "default", want: "user:other/jdoe"},
		{ref: "Group:ns/x", kind: "user", ns: "default", want: "group:ns/x"},
		{ref: "jdoe", kind: "user", ns: "", wantErr: "has no namespace"},
		{ref: "jdoe", kind: "", ns: "default", wantErr: "has no kind"},
		{ref: "not a name", kind: "user", ns: "default", wantErr: "name"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := ParseEntityRefDefaults(tt.ref, tt.kind, tt.ns)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("got %v, %v; want %q", got, err, tt.want)
			}
		})
	}
}
