package inithelper

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/nexcage/nexcage/internal/lazyre"
)

// The helpers apply a Process in two phases, in the order runc's init
// uses (libcontainer's standard_init_linux.go and finalizeNamespace):
//
// Prepare, in `create` before the helper reports ready (so a process
// that cannot get what the bundle asks for fails create):
//  1. (mounts and network setup: earlier steps of the init helper;
//     process.oomScoreAdj is set from the host, see Process.OOMScoreAdj);
//  2. write the net.* sysctls under /proc/sys/net (the helper is the
//     container's init, so this is the container's network namespace);
//  3. check the capabilities against what the container has (bounding
//     and permitted sets), the rlimits against what may be raised,
//     that setuid/setgid and dropping the bounding set are possible;
//  4. check that cwd is a directory and that args[0] is found (PATH of
//     the process's env) and executable by the target uid/gid/groups.
//
// Apply, at `start`, after the stdio is in place:
//  1. chdir to cwd (again after the user switch if root may not enter it);
//  2. setrlimit for each rlimit;
//  3. umask (0022 when the bundle sets none);
//  4. drop the bounding set to process.capabilities.bounding
//     (PR_CAPBSET_DROP; needs CAP_SETPCAP, so before the user switch);
//  5. PR_SET_KEEPCAPS, setgroups, setresgid, setresuid, keep-caps off;
//  6. capset of effective, permitted, inheritable; then the ambient set;
//  7. PR_SET_NO_NEW_PRIVS when noNewPrivileges;
//  8. every descriptor above 2 close-on-exec, then execve from the main
//     thread (all of the above is per thread where the kernel says so).

// CapabilityByName maps an OCI capability name (CAP_NET_ADMIN) to the
// capability; false when the name is not a Linux capability.
func CapabilityByName(name string) (capability.Cap, bool) {
	n := strings.ToLower(strings.TrimPrefix(strings.ToUpper(name), "CAP_"))
	for _, c := range capability.ListKnown() {
		if c.String() == n {
			return c, true
		}
	}
	return 0, false
}

// rlimits maps OCI rlimit types to resources.
var rlimits = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// RlimitResource maps an OCI rlimit type (RLIMIT_NOFILE) to its resource.
func RlimitResource(typ string) (int, bool) {
	r, ok := rlimits[typ]
	return r, ok
}

var reNetSysctl = lazyre.New(`^net(\.[A-Za-z0-9_-]+)+$`)

// SysctlPath is the /proc/sys file of a net.* sysctl key; other keys
// and keys that could leave /proc/sys/net are refused.
func SysctlPath(key string) (string, error) {
	if !reNetSysctl.MatchString(key) {
		return "", fmt.Errorf("sysctl %q: only net.* keys (letters, digits, _ and -) are written by the init helper", key)
	}
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/"), nil
}

// procSys is where sysctls are written; a variable for tests.
var procSys = "/proc/sys/"

// writeSysctls writes the net.* sysctls in sorted order.
func writeSysctls(s map[string]string) error {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p, err := SysctlPath(k)
		if err != nil {
			return err
		}
		p = procSys + strings.TrimPrefix(p, "/proc/sys/")
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			_, err = f.WriteString(s[k])
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return fmt.Errorf("linux.sysctl %s=%q cannot be set in the container's network namespace: %v", k, s[k], unwrapPath(err))
		}
	}
	return nil
}

// wanted is the Process's capability sets, resolved.
type wanted struct {
	sets map[capability.CapType][]capability.Cap
}

var capSets = []struct {
	kind capability.CapType
	name string
	get  func(*Process) []string
}{
	{capability.BOUNDING, "bounding", func(p *Process) []string { return p.Capabilities.Bounding }},
	{capability.EFFECTIVE, "effective", func(p *Process) []string { return p.Capabilities.Effective }},
	{capability.PERMITTED, "permitted", func(p *Process) []string { return p.Capabilities.Permitted }},
	{capability.INHERITABLE, "inheritable", func(p *Process) []string { return p.Capabilities.Inheritable }},
	{capability.AMBIENT, "ambient", func(p *Process) []string { return p.Capabilities.Ambient }},
}

// resolveCaps resolves the names of every set; unknown names and
// capabilities this kernel does not have are errors (never ignored).
func resolveCaps(p *Process) (*wanted, error) {
	if p.Capabilities == nil {
		return nil, nil
	}
	last, err := capability.LastCap()
	if err != nil {
		return nil, fmt.Errorf("cannot read the kernel's last capability: %w", err)
	}
	w := &wanted{sets: map[capability.CapType][]capability.Cap{}}
	for _, s := range capSets {
		for _, n := range s.get(p) {
			c, ok := CapabilityByName(n)
			if !ok {
				return nil, fmt.Errorf("process.capabilities.%s: %q is not a capability", s.name, n)
			}
			if c > last {
				return nil, fmt.Errorf("process.capabilities.%s: %s is not supported by this kernel", s.name, n)
			}
			w.sets[s.kind] = append(w.sets[s.kind], c)
		}
	}
	return w, nil
}

func capNames(cs []capability.Cap) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = "CAP_" + strings.ToUpper(c.String())
	}
	return strings.Join(out, ", ")
}

// checkCaps tells whether the helper can give the process exactly the
// capabilities it asks for and switch to its user.
func checkCaps(p *Process, w *wanted) error {
	cur, err := capability.NewPid2(0)
	if err == nil {
		err = cur.Load()
	}
	if err != nil {
		return fmt.Errorf("cannot read the helper's capabilities: %w", err)
	}
	gids := make([]int, len(p.AdditionalGids))
	for i, g := range p.AdditionalGids {
		gids[i] = int(g)
	}
	curGroups, _ := unix.Getgroups()
	if (unix.Getgid() != int(p.GID) || !slices.Equal(curGroups, gids)) && !cur.Get(capability.EFFECTIVE, capability.CAP_SETGID) {
		return fmt.Errorf("cannot switch to gid %d and groups %v: the helper lacks CAP_SETGID", p.GID, p.AdditionalGids)
	}
	if unix.Getuid() != int(p.UID) && !cur.Get(capability.EFFECTIVE, capability.CAP_SETUID) {
		return fmt.Errorf("cannot switch to uid %d: the helper lacks CAP_SETUID", p.UID)
	}
	if w == nil {
		return nil
	}
	for _, s := range capSets {
		var missing []capability.Cap
		for _, c := range w.sets[s.kind] {
			if !cur.Get(capability.BOUNDING, c) || (s.kind != capability.BOUNDING && !cur.Get(capability.PERMITTED, c)) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("process.capabilities.%s asks for %s, which this container does not have (Proxmox/LXC drops them); remove them from the bundle or give the container a wider capability set",
				s.name, capNames(missing))
		}
	}
	for _, c := range w.sets[capability.AMBIENT] {
		if !contains(w.sets[capability.PERMITTED], c) || !contains(w.sets[capability.INHERITABLE], c) {
			return fmt.Errorf("process.capabilities.ambient: %s must be in the permitted and inheritable sets too", capNames([]capability.Cap{c}))
		}
	}
	for _, c := range w.sets[capability.EFFECTIVE] {
		if !contains(w.sets[capability.PERMITTED], c) {
			return fmt.Errorf("process.capabilities.effective: %s must be in the permitted set too", capNames([]capability.Cap{c}))
		}
	}
	last, _ := capability.LastCap()
	for c := capability.Cap(0); c <= last; c++ {
		if cur.Get(capability.BOUNDING, c) && !contains(w.sets[capability.BOUNDING], c) {
			if !cur.Get(capability.EFFECTIVE, capability.CAP_SETPCAP) {
				return fmt.Errorf("cannot reduce the bounding set to process.capabilities.bounding: the container's init lacks CAP_SETPCAP")
			}
			break
		}
	}
	return nil
}

func contains(cs []capability.Cap, c capability.Cap) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// narrowTo drops every capability outside mask (hex, as CapBnd in
// /proc/<pid>/status) from all of the calling thread's sets; "" keeps
// them.
func narrowTo(mask string) error {
	if mask == "" {
		return nil
	}
	m, err := strconv.ParseUint(mask, 16, 64)
	if err != nil {
		return fmt.Errorf("the container's bounding set %q is not a hex mask", mask)
	}
	caps, err := capability.NewPid2(0)
	if err == nil {
		err = caps.Load()
	}
	if err != nil {
		return fmt.Errorf("cannot read the helper's capabilities: %w", err)
	}
	last, err := capability.LastCap()
	if err != nil {
		return err
	}
	for c := capability.Cap(0); c <= last; c++ {
		if m&(1<<uint(c)) == 0 {
			caps.Unset(capability.CAPS|capability.BOUNDS|capability.AMBS, c)
		}
	}
	if err := caps.Apply(capability.BOUNDS); err != nil {
		return fmt.Errorf("cannot narrow to the container's bounding set: %w", err)
	}
	if err := caps.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("cannot narrow to the container's bounding set: %w", err)
	}
	if err := verifyCaps(caps); err != nil {
		return fmt.Errorf("narrowing to the container's bounding set: %w", err)
	}
	return nil
}

// checkRlimits tells whether every rlimit can be set: soft <= hard, and
// a hard limit above the current one needs CAP_SYS_RESOURCE.
func checkRlimits(p *Process) error {
	if len(p.Rlimits) == 0 {
		return nil
	}
	cur, err := capability.NewPid2(0)
	if err == nil {
		err = cur.Load()
	}
	if err != nil {
		return fmt.Errorf("cannot read the helper's capabilities: %w", err)
	}
	for _, rl := range p.Rlimits {
		res, ok := RlimitResource(rl.Type)
		if !ok {
			return fmt.Errorf("process.rlimits: unknown type %q", rl.Type)
		}
		if rl.Soft > rl.Hard {
			return fmt.Errorf("process.rlimits %s: soft limit %d is above the hard limit %d", rl.Type, rl.Soft, rl.Hard)
		}
		var now unix.Rlimit
		if err := unix.Getrlimit(res, &now); err != nil {
			return fmt.Errorf("process.rlimits %s: %v", rl.Type, err)
		}
		if rl.Hard > now.Max && !cur.Get(capability.EFFECTIVE, capability.CAP_SYS_RESOURCE) {
			return fmt.Errorf("process.rlimits %s: hard limit %d is above the container's %d and its init lacks CAP_SYS_RESOURCE", rl.Type, rl.Hard, now.Max)
		}
	}
	return nil
}

// Prepare checks everything about p that can be checked before start
// and, for the init helper (sysctls true), writes its sysctls. It
// returns the path of args[0] to exec.
func Prepare(p *Process, sysctls bool) (string, error) {
	if len(p.Args) == 0 {
		return "", errors.New("process.args is empty")
	}
	if len(p.Sysctl) > 0 {
		if !sysctls {
			return "", errors.New("linux.sysctl cannot be set for an exec'd process")
		}
		if err := writeSysctls(p.Sysctl); err != nil {
			return "", err
		}
	}
	w, err := resolveCaps(p)
	if err != nil {
		return "", err
	}
	if err := checkCaps(p, w); err != nil {
		return "", err
	}
	if err := checkRlimits(p); err != nil {
		return "", err
	}
	cwd := cwdOf(p)
	fi, err := os.Stat(cwd)
	if err != nil {
		return "", fmt.Errorf("process.cwd %q: %v", cwd, unwrapPath(err))
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("process.cwd %q is not a directory", cwd)
	}
	id := &Identity{UID: p.UID, GID: p.GID, Groups: p.AdditionalGids}
	return LookPath(p.Args[0], p.Env, cwd, id)
}

func cwdOf(p *Process) string {
	if p.Cwd == "" {
		return "/"
	}
	return p.Cwd
}

// Apply gives the calling thread (which must be locked to its OS thread
// and then exec) everything of p, in the order documented above. The
// stdio must be in place. It does not exec.
func Apply(p *Process) error {
	cwd := cwdOf(p)
	chdirLater := false
	if err := unix.Chdir(cwd); err != nil {
		if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("chdir to cwd (%q) set in config.json failed: %v", cwd, err)
		}
		// Root may be refused where the process's user is not (a volume
		// owned by it on a root-squashed file system): retry as the user.
		chdirLater = true
	}
	for _, rl := range p.Rlimits {
		res, ok := RlimitResource(rl.Type)
		if !ok {
			return fmt.Errorf("process.rlimits: unknown type %q", rl.Type)
		}
		// unix.Setrlimit goes through syscall.Setrlimit, which also stops
		// the Go runtime from restoring its own RLIMIT_NOFILE at exec.
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return fmt.Errorf("setrlimit %s soft %d hard %d: %v", rl.Type, rl.Soft, rl.Hard, err)
		}
	}
	umask := uint32(0o022)
	if p.Umask != nil {
		umask = *p.Umask
	}
	unix.Umask(int(umask & 0o777))
	w, err := resolveCaps(p)
	if err != nil {
		return err
	}
	var caps capability.Capabilities
	if w != nil {
		if caps, err = capability.NewPid2(0); err != nil {
			return fmt.Errorf("capabilities: %v", err)
		}
		caps.Clear(capability.CAPS | capability.BOUNDS | capability.AMBS)
		for kind, cs := range w.sets {
			caps.Set(kind, cs...)
		}
		if err := caps.Apply(capability.BOUNDS); err != nil {
			return fmt.Errorf("cannot drop the bounding set to process.capabilities.bounding: %v", err)
		}
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %v", err)
		}
	}
	if err := switchUser(p.UID, p.GID, p.AdditionalGids); err != nil {
		return err
	}
	if w != nil {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %v", err)
		}
	}
	if chdirLater {
		if err := unix.Chdir(cwd); err != nil {
			return fmt.Errorf("chdir to cwd (%q) set in config.json failed: %v", cwd, err)
		}
	}
	if w != nil {
		if err := caps.Apply(capability.CAPS | capability.AMBS); err != nil {
			return fmt.Errorf("cannot set process.capabilities (effective, permitted, inheritable, ambient): %v", err)
		}
		if err := verifyCaps(caps); err != nil {
			return err
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %v", err)
		}
	}
	return nil
}

// verifyCaps reads the sets back: the process never runs with other
// capabilities than asked for (Apply ignores an unsupported ambient set).
func verifyCaps(want capability.Capabilities) error {
	got, err := capability.NewPid2(0)
	if err == nil {
		err = got.Load()
	}
	if err != nil {
		return fmt.Errorf("cannot read the capabilities back: %v", err)
	}
	last, _ := capability.LastCap()
	for _, s := range capSets {
		for c := capability.Cap(0); c <= last; c++ {
			if want.Get(s.kind, c) != got.Get(s.kind, c) {
				return fmt.Errorf("process.capabilities.%s: CAP_%s could not be set as asked", s.name, strings.ToUpper(c.String()))
			}
		}
	}
	return nil
}

// execProcess applies p and execs path from the calling (locked) thread.
// It returns only on failure.
func execProcess(p *Process, path string) error {
	if err := Apply(p); err != nil {
		return err
	}
	// Nothing of the helper's own descriptors reaches the process.
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	err := unix.Exec(path, p.Args, p.Env)
	return fmt.Errorf("exec %q: %v", p.Args[0], err)
}

// switchUser sets the process's groups, gid and uid, each only when it
// differs from the current one (a process staying root needs neither
// CAP_SETGID nor CAP_SETUID).
func switchUser(uid, gid uint32, groups []uint32) error {
	gids := make([]int, len(groups))
	for i, g := range groups {
		gids[i] = int(g)
	}
	if cur, err := unix.Getgroups(); err != nil || !slices.Equal(cur, gids) {
		if err := unix.Setgroups(gids); err != nil {
			return fmt.Errorf("setgroups %v: %w", gids, err)
		}
	}
	if unix.Getgid() != int(gid) || unix.Getegid() != int(gid) {
		if err := unix.Setresgid(int(gid), int(gid), int(gid)); err != nil {
			return fmt.Errorf("setgid %d: %w", gid, err)
		}
	}
	if unix.Getuid() != int(uid) || unix.Geteuid() != int(uid) {
		if err := unix.Setresuid(int(uid), int(uid), int(uid)); err != nil {
			return fmt.Errorf("setuid %d: %w", uid, err)
		}
	}
	return nil
}

// Identity is a process's user for permission checks.
type Identity struct {
	UID, GID uint32
	Groups   []uint32
}

// mayExec tells whether id may execute a file with fi's mode and owner
// (the kernel's rule: owner bits for the owner, group bits for a member
// of the file's group, others bits else; root needs any x bit).
func (id *Identity) mayExec(fi os.FileInfo) bool {
	m := fi.Mode().Perm()
	if id == nil || id.UID == 0 {
		return m&0o111 != 0
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return m&0o111 != 0
	}
	if st.Uid == id.UID {
		return m&0o100 != 0
	}
	if st.Gid == id.GID || containsU32(id.Groups, st.Gid) {
		return m&0o010 != 0
	}
	return m&0o001 != 0
}

func containsU32(l []uint32, v uint32) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}
