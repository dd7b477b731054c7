package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	goruntime "runtime"
	"slices"

	"github.com/nexcage/nexcage/internal/backend/ocirun"
	"github.com/nexcage/nexcage/internal/backend/proxmox"
	"github.com/nexcage/nexcage/internal/bundle"
	"github.com/nexcage/nexcage/internal/config"
	"github.com/nexcage/nexcage/internal/errs"
	"github.com/nexcage/nexcage/internal/trust"
	"github.com/nexcage/nexcage/internal/version"
)

// features prints the runtime-spec features of the backend that would
// run a container: --runtime, else the route of --id, else the backend
// the program name forces (nexcage-<runtime>), else the default route
// (container_config.default_container_type). runc and crun answer
// for themselves (nexcage hands them config.json unchanged); the Proxmox
// backend's answer comes from its translator's tables and the host's
// security modules. Annotations say which backend answered and how.
func (a *App) features(ctx context.Context) error {
	router, err := a.cfg.Router()
	if err != nil {
		return err
	}
	var d config.Decision
	_, forced := config.ProgramBackend(a.Program)
	switch {
	case a.inv.ID != "" || a.inv.Globals.Runtime != "" || forced:
		d, err = router.Decide(config.Request{ID: a.inv.ID, Override: a.inv.Globals.Runtime, Program: a.Program})
	default:
		d, err = router.Default()
	}
	if err != nil {
		return err
	}
	var doc map[string]json.RawMessage
	var source string
	switch d.Backend {
	case config.BackendProxmox:
		f := proxmox.Features(proxmox.DetectLSM(), "1.0.0", version.SpecVersion)
		b, err := json.Marshal(f)
		if err != nil {
			return errs.Wrap(errs.KindInternal, err, "encoding features")
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return errs.Wrap(errs.KindInternal, err, "encoding features")
		}
		source = "the proxmox-lxc backend's mapping (docs/MAPPING.md)"
	case config.BackendRunc, config.BackendCrun:
		rc := a.cfg.Runtimes.Runc
		if d.Backend == config.BackendCrun {
			rc = a.cfg.Runtimes.Crun
		}
		bin := rc.Path
		if bin == "" {
			bin = d.Backend
		}
		var data []byte
		data, source, err = ocirun.Features(ctx, d.Backend, bin)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return errs.Wrap(errs.KindBackend, err, "%s features", bin)
		}
	default:
		return errs.New(errs.KindInternal, "features: unknown backend %q", d.Backend)
	}
	ann := map[string]string{}
	if raw, ok := doc["annotations"]; ok {
		if err := json.Unmarshal(raw, &ann); err != nil || ann == nil {
			ann = map[string]string{}
		}
	}
	ann["org.nexcage.version"] = version.Version
	ann["org.nexcage.commit"] = version.Commit
	ann["org.nexcage.backend"] = d.Backend
	ann["org.nexcage.route"] = d.Reason
	ann["org.nexcage.features.source"] = source
	b, err := json.Marshal(ann)
	if err != nil {
		return errs.Wrap(errs.KindInternal, err, "encoding features")
	}
	doc["annotations"] = b
	return a.printJSON(orderedDoc(doc), true)
}

// featureKeys is the runtime-spec order of the features fields.
var featureKeys = []string{"ociVersionMin", "ociVersionMax", "hooks", "mountOptions", "linux", "annotations", "potentiallyUnsafeConfigAnnotations"}

// orderedDoc is a JSON object whose keys are written in the spec's order
// (then any others, sorted), as a runtime prints them.
type orderedDoc map[string]json.RawMessage

// MarshalJSON writes the keys in featureKeys order.
func (d orderedDoc) MarshalJSON() ([]byte, error) {
	var rest []string
	for k := range d {
		if !slices.Contains(featureKeys, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	var buf bytes.Buffer
	buf.WriteByte('{')
	n := 0
	for _, k := range append(slices.Clone(featureKeys), rest...) {
		v, ok := d[k]
		if !ok {
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		n++
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// version prints nexcage's version and the backend tools found.
func (a *App) version(ctx context.Context) error {
	w := a.Stdout
	fmt.Fprintf(w, "nexcage version %s\ncommit: %s\nspec: %s (generated bundles: %s)\ngo: %s\n",
		version.Version, version.Commit, version.SpecVersion, bundle.SpecVersion, goruntime.Version())
	for _, rt := range []struct {
		name string
		rc   config.OCIRuntime
	}{{config.BackendRunc, a.cfg.Runtimes.Runc}, {config.BackendCrun, a.cfg.Runtimes.Crun}} {
		bin := rt.rc.Path
		if bin == "" {
			bin = rt.name
		}
		path, v, err := ocirun.BinaryVersion(ctx, rt.name, bin)
		if err != nil {
			fmt.Fprintf(w, "%s: not available (%v)\n", rt.name, err)
			continue
		}
		fmt.Fprintf(w, "%s: %s (%s)\n", rt.name, v, path)
	}
	pct := a.cfg.Proxmox.PctPath
	if pct == "" {
		pct = "pct"
	}
	if path, err := trust.LookPath(pct); err == nil {
		fmt.Fprintf(w, "%s: pct at %s\n", config.BackendProxmox, path)
	} else {
		fmt.Fprintf(w, "%s: pct not available (%v)\n", config.BackendProxmox, err)
	}
	return nil
}
