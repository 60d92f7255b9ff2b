package server_test

import (
	"github.com/spectroauth/spectroauth/host/internal/authtest"
)

// The harness is shared with host/cliauth's tests (host/internal/authtest);
// these names keep this package's tests reading as before.
type (
	fixture        = authtest.Fixture
	fixtureOptions = authtest.Options
	browser        = authtest.Browser
)

const (
	appOrigin = authtest.AppOrigin
	clientID  = authtest.ClientID
	secret    = authtest.Secret
	scope     = authtest.Scope
)

var (
	boolPtr      = authtest.BoolPtr
	newFixture   = authtest.NewFixture
	newBrowser   = authtest.NewBrowser
	startURL     = authtest.StartURL
	popupQuery   = authtest.PopupQuery
	frameMessage = authtest.FrameMessage
	signIn       = authtest.SignIn
	refresh      = authtest.Refresh
	decodeJSON   = authtest.DecodeJSON
	jwtClaims    = authtest.JWTClaims
	jwtHeader    = authtest.JWTHeader
	b64          = authtest.B64
	jsonNumber   = authtest.JSONNumber
	newLoopback  = authtest.NewLoopback
	newPKCE      = authtest.NewPKCE
	cliStartURL  = authtest.CLIStartURL
	cliSignIn    = authtest.CLISignIn
	withDecision = authtest.WithDecision
	consentForm  = authtest.ConsentForm
	tokenRequest = authtest.TokenRequest
)
