// Package catalog is the logic of the backstage-catalog plugin: sign-in
// resolvers that find the signed-in user's User entity in Backstage's catalog
// through its REST API, as Backstage's own resolvers do, and return the
// user's ref plus the groups of its memberOf relations.
//
// The resolvers, named as in Backstage, are emailMatchingUserEntityProfileEmail,
// emailLocalPartMatchingUserEntityName, emailMatchingUserEntityAnnotation and
// preferredUsernameMatchingUserEntityName. Lookups are cached for a while
// and run at most once at a time per user, so that a refresh storm costs the
// catalog little. See the plugin's README.md for its configuration and for
// how it follows, and where it departs from, Backstage.
package catalog
