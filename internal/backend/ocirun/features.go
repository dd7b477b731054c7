package ocirun

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/nexcage/nexcage/internal/errs"
)

// Features returns what runtime name (runc or crun), run from bin (a path
// or a name looked up on PATH), supports, as a runtime-spec features JSON
// object, and where the answer comes from. nexcage hands a routed
// container's config.json to the runtime unchanged, so the runtime's own
// `features` output is the truth and is returned as it is. A runtime too
// old for that command (runc before 1.1, crun before 1.8.6) is described
// from its --version output instead: only what that states is filled in
// (spec version; seccomp, and for crun AppArmor, SELinux and systemd,
// from its build flags), everything else left out, which the format
// reads as "unknown".
func Features(ctx context.Context, name, bin string) (data []byte, source string, err error) {
	path, err := LookPath(name, bin)
	if err != nil {
		return nil, "", err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "features")
	cmd.Stderr = &stderr
	out, ferr := cmd.Output()
	if ferr == nil {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(out, &obj); err != nil {
			return nil, "", errs.Wrap(errs.KindBackend, err, "`%s features` did not print a JSON object", path)
		}
		return out, "`" + path + " features`", nil
	}
	vout, verr := exec.CommandContext(ctx, path, "--version").Output()
	if verr != nil {
		return nil, "", errs.Wrap(errs.KindBackend, ferr, "`%s features` failed (%s) and `%s --version` failed (%v)",
			path, strings.TrimSpace(stderr.String()), path, verr).
			WithHint("check runtimes.%s.path in the config", name)
	}
	f := featuresFromVersion(name, string(vout))
	data, err = json.Marshal(f)
	if err != nil {
		return nil, "", errs.Wrap(errs.KindInternal, err, "encoding features")
	}
	return data, "`" + path + " --version` (this " + name + " has no features command: " + strings.TrimSpace(stderr.String()) + ")", nil
}

// featuresFromVersion reads what a `--version` output states: the spec
// version ("spec: 1.0.2-dev"), runc's libseccomp line, and crun's build
// flags (+SECCOMP +APPARMOR +SELINUX +SYSTEMD).
func featuresFromVersion(name, out string) *features.Features {
	yes, no := true, false
	f := &features.Features{OCIVersionMin: "1.0.0", Linux: &features.Linux{}}
	flags := map[string]bool{}
	crunFlags := false
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "spec:"):
			f.OCIVersionMax = strings.TrimSpace(strings.TrimPrefix(line, "spec:"))
		case strings.HasPrefix(line, "libseccomp:"):
			f.Linux.Seccomp = &features.Seccomp{Enabled: &yes}
		case strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-"):
			crunFlags = true
			for _, w := range strings.Fields(line) {
				flags[strings.TrimLeft(w, "+-")] = strings.HasPrefix(w, "+")
			}
		}
	}
	if name == "crun" && crunFlags {
		flag := func(k string) *bool {
			if flags[k] {
				return &yes
			}
			return &no
		}
		f.Linux.Seccomp = &features.Seccomp{Enabled: flag("SECCOMP")}
		f.Linux.Apparmor = &features.Apparmor{Enabled: flag("APPARMOR")}
		f.Linux.Selinux = &features.Selinux{Enabled: flag("SELINUX")}
		f.Linux.Cgroup = &features.Cgroup{Systemd: flag("SYSTEMD")}
	}
	return f
}
