package sdk_test

import (
	"fmt"

	"github.com/spectroauth/spectroauth/sdk"
)

func ExampleParseEntityRef() {
	ref, err := sdk.ParseEntityRef("User:default/JDoe")
	fmt.Println(ref.Kind, ref.Namespace, ref.Name, err)
	fmt.Println(ref.String())

	_, err = sdk.ParseEntityRef("jdoe")
	fmt.Println(err)

	short, _ := sdk.ParseEntityRefDefaults("jdoe", "user", sdk.DefaultNamespace)
	fmt.Println(short)
	// Output:
	// User default JDoe <nil>
	// user:default/JDoe
	// entity ref "jdoe" has no kind: want <kind>:<namespace>/<name>
	// user:default/jdoe
}

func ExampleOptions() {
	opts := sdk.Options{"catalog": map[string]any{"url": "https://backstage", "timeout": "5s"}, "grup": "x"}

	timeout, _ := opts.Duration("catalog.timeout", 0)
	fmt.Println(timeout)

	_, err := opts.String("catalog.token")
	fmt.Println(err)

	fmt.Println(opts.RejectUnknown("catalog.url", "catalog.timeout", "group"))
	// Output:
	// 5s
	// config key "catalog.token": is required
	// config key "grup": unknown key: known keys here are catalog, group
}
