package proxmox

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
)

// annotationCRIOContainerType is CRI-O's counterpart of
// config.AnnotationContainerType.
const annotationCRIOContainerType = "io.kubernetes.cri-o.ContainerType"

// refusePod refuses a Kubernetes pod's sandbox or app container (a
// bundle from a CRI runtime, marked by its container-type annotation)
// before any side effect: running pods as Proxmox containers (the
// sandbox as the CT, its app containers inside it) is not built yet, and
// the spec's other demands would fail later with less useful words (the
// sandbox joins a CNI network namespace by path, app containers join the
// pause process's namespaces by /proc paths).
func refusePod(id string, spec *specs.Spec) error {
	if spec == nil {
		return nil
	}
	ann := spec.Annotations
	typ, ok := ann[config.AnnotationContainerType]
	if !ok {
		typ, ok = ann[annotationCRIOContainerType]
	}
	if !ok {
		return nil
	}
	ns, pod := ann[config.AnnotationSandboxNamespace], ann[config.AnnotationSandboxName]
	what := "the sandbox (pause container)"
	if typ != config.ContainerTypeSandbox {
		what = "container " + orDefault(ann[config.AnnotationContainerName], "?")
	}
	return errs.New(errs.KindUnsupported,
		"container %s: %s of Kubernetes pod %s/%s: Kubernetes pods cannot run on the Proxmox backend yet (a pod as one Proxmox container is planned, docs/KUBERNETES.md)",
		id, what, orDefault(ns, "?"), orDefault(pod, "?")).
		WithHint("route the pod to runc or crun: a RuntimeClass handler whose BinaryName is a nexcage-runc link, or a routing rule such as {\"pod_namespace\": %q, \"container_type\": \"sandbox\", \"runtime\": \"runc\"}", orDefault(ns, "default"))
}
