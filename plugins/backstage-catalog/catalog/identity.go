package catalog

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/sdk"
)

// relationMemberOf is the relation from a User to the Groups it belongs to.
const relationMemberOf = "memberOf"

// identityOf is the identity of a User entity, as Backstage's default
// ownership resolution makes it: the user's own ref plus the refs of the
// groups its memberOf relations point at. Group refs that are not valid
// entity refs are left out (and logged). The SDK allows at most
// sdk.MaxOwnershipEntityRefs refs: beyond that, the groups after the first
// ones in sorted order are left out, with a warning, since failing the
// sign-in would lock the user out and fewer refs only grant less.
func identityOf(e *entity, log hclog.Logger) (sdk.Identity, error) {
	user := sdk.EntityRef{Kind: "user", Namespace: namespaceOf(e), Name: e.Metadata.Name}
	if err := user.Validate(); err != nil {
		return sdk.Identity{}, fmt.Errorf("the catalog's User %s has no valid entity ref: %v", describe(e), err)
	}
	self := user.String()
	var groups []string
	for _, rel := range e.Relations {
		if rel.Type != relationMemberOf {
			continue
		}
		ref, err := sdk.ParseEntityRef(rel.TargetRef)
		if err != nil {
			log.Warn("leaving out a memberOf relation that is not a valid entity ref", "user", self, "targetRef", rel.TargetRef, "error", err)
			continue
		}
		if !strings.EqualFold(ref.Kind, "group") {
			continue
		}
		if g := ref.String(); g != self && !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups)
	if max := sdk.MaxOwnershipEntityRefs - 1; len(groups) > max {
		log.Warn("user is a member of more groups than an identity can carry: leaving some out",
			"user", self, "groups", len(groups), "kept", max, "firstLeftOut", groups[max])
		groups = groups[:max]
	}
	return sdk.Identity{UserEntityRef: self, OwnershipEntityRefs: append([]string{self}, groups...)}, nil
}
