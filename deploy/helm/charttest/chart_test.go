package charttest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// chartDir is the chart under test.
const chartDir = "../spectroauth"

// objects is one rendering of the chart, strictly decoded.
type objects struct {
	deployment     *appsv1.Deployment
	service        *corev1.Service
	serviceAccount *corev1.ServiceAccount
	configMap      *corev1.ConfigMap
	pdb            *policyv1.PodDisruptionBudget
	networkPolicy  *networkingv1.NetworkPolicy
	pvc            *corev1.PersistentVolumeClaim
}

// render renders the chart with the values of file, as helm template does.
func render(t *testing.T, valuesFile string) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	vals, err := chartutil.ReadValuesFile(valuesFile)
	if err != nil {
		t.Fatalf("reading %s: %v", valuesFile, err)
	}
	if err := chartutil.ValidateAgainstSchema(ch, vals); err != nil {
		return nil, err
	}
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "spectroauth", Namespace: "auth", Revision: 1, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, top)
}

// decode splits the rendered manifests and decodes each object strictly
// into its API type: a field the type does not have is an error.
func decode(t *testing.T, files map[string]string) objects {
	t.Helper()
	var o objects
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(files[name], -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var into any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				into = fresh(&o.deployment)
			case "v1 Service":
				into = fresh(&o.service)
			case "v1 ServiceAccount":
				into = fresh(&o.serviceAccount)
			case "v1 ConfigMap":
				into = fresh(&o.configMap)
			case "policy/v1 PodDisruptionBudget":
				into = fresh(&o.pdb)
			case "networking.k8s.io/v1 NetworkPolicy":
				into = fresh(&o.networkPolicy)
			case "v1 PersistentVolumeClaim":
				into = fresh(&o.pvc)
			default:
				t.Fatalf("%s: an object the test does not know: %s %s", name, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s: not a valid %s: %v\n%s", name, tm.Kind, err, doc)
			}
		}
	}
	return o
}

// fresh points *p at a new zero T and returns it, to be decoded into.
func fresh[T any](p **T) any {
	*p = new(T)
	return *p
}

// config is what the chart checks of the rendered configuration.
type config struct {
	Server struct {
		Listen          string `json:"listen"`
		MetricsListen   string `json:"metricsListen"`
		ShutdownTimeout string `json:"shutdownTimeout"`
	} `json:"server"`
	Storage struct {
		Type string `json:"type"`
		Path string `json:"path"`
	} `json:"storage"`
}

func TestChartRendersValidObjects(t *testing.T) {
	daemon := spectroauthd(t)
	files, _ := filepath.Glob("testdata/values/*.yaml")
	if len(files) == 0 {
		t.Fatal("no values files in testdata/values")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			rendered, err := render(t, file)
			if err != nil {
				t.Fatalf("rendering: %v", err)
			}
			o := decode(t, rendered)
			for what, missing := range map[string]bool{
				"Deployment": o.deployment == nil, "Service": o.service == nil, "ServiceAccount": o.serviceAccount == nil,
				"ConfigMap": o.configMap == nil, "PodDisruptionBudget": o.pdb == nil, "NetworkPolicy": o.networkPolicy == nil,
			} {
				if missing {
					t.Fatalf("no %s rendered", what)
				}
			}
			raw := o.configMap.Data["config.yaml"]
			var cfg config
			if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatalf("the ConfigMap's config.yaml: %v", err)
			}
			checkPod(t, o, cfg)
			checkSelectors(t, o)
			checkConfig(t, daemon, raw)
		})
	}
}

// checkPod asserts the pod's security, probes, volumes, grace period and
// the replicas rule.
func checkPod(t *testing.T, o objects, cfg config) {
	t.Helper()
	d := o.deployment
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	psc, sc := pod.SecurityContext, c.SecurityContext
	switch {
	case psc == nil || sc == nil:
		t.Fatal("no security context")
	case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot is not true for the pod and the container")
	case psc.RunAsUser == nil || *psc.RunAsUser == 0:
		t.Error("the pod does not run as a non-zero numeric user")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root file system is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v, want ALL dropped and none added", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("no RuntimeDefault seccomp profile")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token is mounted; the daemon never calls its cluster's API")
	}

	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if want := portOf(t, cfg.Server.Listen); ports["http"] != want {
		t.Errorf("container port http = %d, want server.listen's %d", ports["http"], want)
	}
	if cfg.Server.MetricsListen != "" && ports["metrics"] != portOf(t, cfg.Server.MetricsListen) {
		t.Errorf("container port metrics = %d, want server.metricsListen's", ports["metrics"])
	}
	if cfg.Server.MetricsListen == "" && ports["metrics"] != 0 {
		t.Error("a metrics port without server.metricsListen")
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz", "startup": "/healthz"}[name]
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s probe %+v, want GET %s on port http", name, p, want)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("mount %s: no volume %s", m.MountPath, m.Name)
		}
	}
	if m, ok := mounts["/tmp"]; !ok || volumes[m.Name].EmptyDir == nil || m.ReadOnly {
		t.Error("no writable emptyDir at /tmp")
	}
	if m, ok := mounts[cfg.Storage.Path]; cfg.Storage.Type != "postgres" && (!ok || m.ReadOnly) {
		t.Errorf("no writable data volume at storage.path %s", cfg.Storage.Path)
	}
	if o.pvc != nil {
		if v := volumes[mounts[cfg.Storage.Path].Name]; v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != o.pvc.Name {
			t.Errorf("the data volume is not the chart's claim %s", o.pvc.Name)
		}
	}
	if m, ok := mounts["/etc/spectroauth"]; !ok || volumes[m.Name].ConfigMap == nil || volumes[m.Name].ConfigMap.Name != o.configMap.Name {
		t.Error("the ConfigMap is not mounted at /etc/spectroauth")
	}
	if strings.Join(c.Args, " ") != "-config /etc/spectroauth/config.yaml -log-format json" {
		t.Errorf("args %q", c.Args)
	}

	shutdown := 15 * time.Second
	if cfg.Server.ShutdownTimeout != "" {
		var err error
		if shutdown, err = time.ParseDuration(cfg.Server.ShutdownTimeout); err != nil {
			t.Fatal(err)
		}
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= shutdown {
		t.Errorf("terminationGracePeriodSeconds %v is not above server.shutdownTimeout %s", g, shutdown)
	}
	if replicas := *d.Spec.Replicas; replicas > 1 && cfg.Storage.Type != "postgres" {
		t.Errorf("%d replicas on storage.type %s", replicas, cfg.Storage.Type)
	}
	if cfg.Storage.Type != "postgres" && d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Error("file storage rolls out with two pods on one data volume; want Recreate")
	}
}

// checkSelectors asserts that the Service, the PodDisruptionBudget and the
// NetworkPolicy select the Deployment's pods, and that every Service port
// targets a container port.
func checkSelectors(t *testing.T, o objects) {
	t.Helper()
	labels := o.deployment.Spec.Template.Labels
	matches := func(what string, sel map[string]string) {
		if len(sel) == 0 {
			t.Errorf("%s selects nothing in particular", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s; the pods have %q", what, k, v, labels[k])
			}
		}
	}
	matches("the Service", o.service.Spec.Selector)
	matches("the PodDisruptionBudget", o.pdb.Spec.Selector.MatchLabels)
	matches("the NetworkPolicy", o.networkPolicy.Spec.PodSelector.MatchLabels)
	matches("the Deployment", o.deployment.Spec.Selector.MatchLabels)
	if o.pdb.Spec.MaxUnavailable == nil && o.pdb.Spec.MinAvailable == nil {
		t.Error("the PodDisruptionBudget sets no budget")
	}
	named := map[string]bool{}
	for _, p := range o.deployment.Spec.Template.Spec.Containers[0].Ports {
		named[p.Name] = true
	}
	for _, p := range o.service.Spec.Ports {
		if !named[p.TargetPort.String()] {
			t.Errorf("Service port %s targets %s, which the container does not have", p.Name, p.TargetPort.String())
		}
	}
	if sa := o.deployment.Spec.Template.Spec.ServiceAccountName; sa != o.serviceAccount.Name {
		t.Errorf("the pod runs as service account %q, the chart made %q", sa, o.serviceAccount.Name)
	}
}

// checkConfig runs spectroauthd check-config on the rendered configuration,
// with every ${VAR} it references set as the pod's environment would.
func checkConfig(t *testing.T, daemon, raw string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "check-config", "-config", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllStringSubmatch(raw, -1) {
		cmd.Env = append(cmd.Env, m[1]+"="+exampleValue(m[1]))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("spectroauthd check-config refuses the rendered configuration: %v\n%s\n%s", err, out.String(), raw)
	}
}

// exampleValue is a plausible value for a variable the configuration references.
func exampleValue(name string) string {
	switch {
	case strings.HasSuffix(name, "_SHA256"):
		return strings.Repeat("ab", 32)
	case strings.HasSuffix(name, "_HOST"):
		return "console.spectrocloud.com"
	case strings.Contains(name, "POSTGRES"):
		return "postgres://spectroauth@postgres.auth.svc:5432/spectroauth?sslmode=verify-full"
	default:
		return "example-" + strings.ToLower(name)
	}
}

func portOf(t *testing.T, listen string) int32 {
	t.Helper()
	i := strings.LastIndexByte(listen, ':')
	p, err := strconv.ParseInt(listen[i+1:], 10, 32)
	if i < 0 || err != nil {
		t.Fatalf("listen address %q has no port", listen)
	}
	return int32(p)
}

// TestChartRefuses renders every values file in testdata/refused and wants
// the error its first line names ("# want: ...").
func TestChartRefuses(t *testing.T) {
	files, _ := filepath.Glob("testdata/refused/*.yaml")
	if len(files) == 0 {
		t.Fatal("no values files in testdata/refused")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s does not start with # want: ERROR", file)
			}
			_, err = render(t, file)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("rendering: %v\nwant an error with %q", err, want)
			}
		})
	}
}

// spectroauthd is the daemon binary: $SPECTROAUTHD (make test-chart sets
// it), else built from the main module.
func spectroauthd(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SPECTROAUTHD"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "spectroauthd")
	cmd := exec.Command("go", "build", "-o", out, "./host")
	cmd.Dir = "../../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building spectroauthd: %v\n%s", err, b)
	}
	return out
}
