package mapping

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"

	"github.com/spectroauth/spectroauth/sdk"
)

// Limits on expressions and their results.
const (
	// maxExpressionLength bounds the source text of one expression.
	maxExpressionLength = 4096
	// maxListResult bounds the elements of an ownershipEntityRefs result
	// read (more than sdk.MaxOwnershipEntityRefs are then left out).
	maxListResult = 1000
	// interruptEvery is how many comprehension iterations run between
	// checks of the evaluation's context.
	interruptEvery = 100
)

// newEnv is the CEL environment every expression is compiled in: the
// variables claims and profile, the standard library, the strings and
// lists extensions and optional values (claims.?groups.orValue([])).
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("profile", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
		ext.Lists(ext.ListsMaxRangeSize(maxListResult)),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(maxExpressionLength),
	)
}

// sharedEnv is the process's one CEL environment: every configuration
// compiles in it, as a cel.Env is safe for concurrent use and its
// expressions cannot change it. Building it, with the type checker and the
// function dispatcher its first compilation builds, is most of the cost of
// a first Configure; Plugin has it built in the background while the
// daemon connects (warmEnv), so Configure mostly finds it ready. The
// expressions of a configuration are still compiled, and their errors
// reported, by Configure.
var sharedEnv = sync.OnceValues(func() (*cel.Env, error) {
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	// One compilation (check and plan) builds what the environment builds
	// lazily on its first use.
	if _, err := compile(env, "warm-up", `claims.size() + profile.size() >= 0`, cel.BoolType, DefaultCostLimit); err != nil {
		return nil, err
	}
	return env, nil
})

// warmEnv builds sharedEnv in the background.
func warmEnv() { go func() { _, _ = sharedEnv() }() }

// expr is a compiled expression of one key of a mapping.
type expr struct {
	// key is where the expression sits in the config, for messages.
	key  string
	prg  cel.Program
	want *cel.Type
}

// compile compiles src, which must produce want (or dyn, checked when it
// runs), into a program bounded by costLimit.
func compile(env *cel.Env, key, src string, want *cel.Type, costLimit uint64) (*expr, error) {
	if len(src) > maxExpressionLength {
		return nil, sdk.ConfigErrorf(key, "is %d characters long, more than %d", len(src), maxExpressionLength)
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, sdk.ConfigErrorf(key, "does not compile: %v", iss.Err())
	}
	if out := ast.OutputType(); !assignable(want, out) {
		return nil, sdk.ConfigErrorf(key, "gives %s, want %s", out, want)
	}
	prg, err := env.Program(ast,
		cel.CostLimit(costLimit),
		cel.InterruptCheckFrequency(interruptEvery),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, sdk.ConfigErrorf(key, "%v", err)
	}
	return &expr{key: key, prg: prg, want: want}, nil
}

// assignable reports whether a result of type out may be what want asks
// for: exactly, or when out leaves the type open (dyn, list(dyn)), in which
// case the evaluation checks the value.
func assignable(want, out *cel.Type) bool {
	switch {
	case out.IsDyn() || want.IsAssignableType(out):
		return true
	case want.Kind() == types.ListKind && out.Kind() == types.ListKind:
		return len(out.Parameters()) == 1 && out.Parameters()[0].IsDyn()
	}
	return false
}

// evalError is an expression that could not be evaluated on an input: a
// missing claim, a claim of another type, the cost limit.
type evalError struct {
	key string
	err error
}

func (e *evalError) Error() string { return fmt.Sprintf("%s: %v", e.key, e.err) }
func (e *evalError) Unwrap() error { return e.err }

// eval runs the expression on vars. A context error (deadline, cancel) is
// returned wrapped as is; any other failure is an *evalError.
func (x *expr) eval(ctx context.Context, vars map[string]any) (ref.Val, error) {
	out, _, err := x.prg.ContextEval(ctx, vars)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: evaluation stopped: %w", x.key, context.Cause(ctx))
		}
		return nil, &evalError{key: x.key, err: err}
	}
	return out, nil
}

// evalBool evaluates a boolean expression.
func (x *expr) evalBool(ctx context.Context, vars map[string]any) (bool, error) {
	out, err := x.eval(ctx, vars)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, &evalError{key: x.key, err: fmt.Errorf("gave %s, want bool", out.Type().TypeName())}
	}
	return bool(b), nil
}

// evalString evaluates a string expression.
func (x *expr) evalString(ctx context.Context, vars map[string]any) (string, error) {
	out, err := x.eval(ctx, vars)
	if err != nil {
		return "", err
	}
	s, ok := out.(types.String)
	if !ok {
		return "", &evalError{key: x.key, err: fmt.Errorf("gave %s, want string", out.Type().TypeName())}
	}
	return string(s), nil
}

// evalStrings evaluates a list-of-strings expression.
func (x *expr) evalStrings(ctx context.Context, vars map[string]any) ([]string, error) {
	out, err := x.eval(ctx, vars)
	if err != nil {
		return nil, err
	}
	l, ok := out.(traits.Lister)
	if !ok {
		return nil, &evalError{key: x.key, err: fmt.Errorf("gave %s, want list(string)", out.Type().TypeName())}
	}
	n, _ := l.Size().(types.Int)
	if n > maxListResult {
		return nil, &evalError{key: x.key, err: fmt.Errorf("gave a list of %d elements, more than %d", n, maxListResult)}
	}
	strs := make([]string, 0, int(n))
	for it := l.Iterator(); it.HasNext() == types.True; {
		e := it.Next()
		s, ok := e.(types.String)
		if !ok {
			return nil, &evalError{key: x.key, err: fmt.Errorf("gave a list holding %s, want only strings", e.Type().TypeName())}
		}
		strs = append(strs, string(s))
	}
	return strs, nil
}

// variables are the CEL variables of a request: claims, as the upstream ID
// token holds them but without "email" unless the daemon deems it verified,
// and profile.
func variables(req sdk.ResolveRequest) map[string]any {
	claims := map[string]any(maps.Clone(req.Claims))
	if claims == nil {
		claims = map[string]any{}
	}
	email := req.Profile.Email
	if !req.Profile.EmailVerified {
		delete(claims, "email")
		email = ""
	}
	groups := req.Groups
	if groups == nil {
		groups = []string{}
	}
	return map[string]any{
		"claims": claims,
		"profile": map[string]any{
			"email":             email,
			"emailVerified":     req.Profile.EmailVerified,
			"displayName":       req.Profile.DisplayName,
			"picture":           req.Profile.Picture,
			"subject":           req.Subject,
			"issuer":            req.Issuer,
			"preferredUsername": req.PreferredUsername,
			"groups":            groups,
		},
	}
}

// isEvalError reports whether err is an expression that failed on its input.
func isEvalError(err error) bool {
	var ee *evalError
	return errors.As(err, &ee)
}
