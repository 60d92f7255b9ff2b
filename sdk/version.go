package sdk

// Version is the semantic version of this SDK module, released under the Git
// tag sdk/vVersion (see the package documentation for what each part of the
// version promises, and sdk/CHANGELOG.md for what changed). A plugin reports
// it in its Describe answer (Info.SDKVersion), so that the daemon's log and
// `spectroauthd plugins` show which SDK a plugin is built with.
const Version = "0.2.0"
