package proxmox

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/nexcage/nexcage/internal/errs"
)

// TestCreateRefusesKubernetesPods: a CRI sandbox or app container is
// refused by name, with the pod and the way out, before any pct call,
// checkpoint or helper file.
func TestCreateRefusesKubernetesPods(t *testing.T) {
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-namespace": "lab", "io.kubernetes.cri.sandbox-name": "web"},
			"container ct1: the sandbox (pause container) of Kubernetes pod lab/web: Kubernetes pods cannot run on the Proxmox backend yet"},
		{map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.sandbox-namespace": "lab", "io.kubernetes.cri.sandbox-name": "web"},
			"container ct1: container app of Kubernetes pod lab/web"},
		{map[string]string{"io.kubernetes.cri-o.ContainerType": "sandbox"}, "Kubernetes pod ?/?"},
	} {
		f := newFakeNode(t, "", "")
		var cps []string
		c, opts := createOpts(t, &cps)
		opts.Spec.Annotations = tc.ann
		err := f.backend.Create(context.Background(), c, opts)
		if errs.KindOf(err) != errs.KindUnsupported || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nexcage-runc") {
			t.Errorf("%v: err = %v; want %q", tc.ann, err, tc.want)
		}
		if _, err := os.Stat(f.log); !os.IsNotExist(err) || len(cps) != 0 || len(filesUnder(t, f.backend.helperBase())) != 0 {
			t.Errorf("%v: side effects before the refusal (pct log %v, checkpoints %q)", tc.ann, err, cps)
		}
	}
}
