package pvecfg

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Type is a JSON-schema type as PVE::JSONSchema knows it.
type Type int

// Schema types.
const (
	TString Type = iota
	TInteger
	TNumber
	TBoolean
)

// Schema describes one option or one key of a property string, with the
// checks PVE::JSONSchema::check_prop applies, in its order: type, format,
// pattern, maxLength, maximum, minimum, enum.
type Schema struct {
	Type       Type
	Optional   bool
	DefaultKey bool     // the bare value of a property string
	Min, Max   *float64 // numeric bounds
	MaxLength  int
	Pattern    *regexp.Regexp // anchored
	Enum       []string
	// Format is a named-format check; its error text is Proxmox's (the
	// caller prefixes "invalid format - ").
	Format func(string) error
	// Props is set for property-string options (net0, rootfs, ...).
	Props PropFormat
}

// PropFormat is the schema of a property string: key -> schema.
type PropFormat map[string]*Schema

// DefaultKey returns the format's default key, or "".
func (f PropFormat) DefaultKey() string {
	for k, s := range f {
		if s.DefaultKey {
			return k
		}
	}
	return ""
}

// Required returns the non-optional keys, sorted.
func (f PropFormat) Required() []string {
	var r []string
	for k, s := range f {
		if !s.Optional && !s.DefaultKey {
			r = append(r, k)
		}
	}
	sort.Strings(r)
	return r
}

// FormatError is parse_property_string's "format error" with its
// per-key problems (paths like `net0.name`).
type FormatError struct {
	Errors map[string]string
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("format error\n")
	for _, k := range sortedKeys(e.Errors) {
		b.WriteString(k + ": " + e.Errors[k] + "\n")
	}
	return b.String()
}

// Parse parses and checks a property string against the format. path is
// the option name used to prefix problems (`net0` -> `net0.name`).
// Booleans are normalised to 0/1 as Proxmox does.
func (f PropFormat) Parse(path, s string) (Props, error) {
	props, err := ParseProps(s, f.DefaultKey())
	if err != nil {
		return nil, err
	}
	errs := map[string]string{}
	sub := func(k string) string {
		if path != "" {
			return path + "." + k
		}
		return k
	}
	for i, kv := range props {
		sc, ok := f[kv.Key]
		if !ok {
			// parse_property_string means to die "invalid key in
			// comma-separated list property", but its `$schema->{alias}`
			// lookup autovivifies $schema first, so the unknown key reaches
			// check_object, which reports it (pvereal confirms, 8.4 and 9.1).
			errs[sub(kv.Key)] = "property is not defined in schema and the schema does not allow additional properties"
			continue
		}
		if sc.Type == TBoolean {
			if b, ok := ParseBool(kv.Value); ok {
				props[i].Value = boolStr(b)
			}
		}
	}
	for k, sc := range f {
		p := sub(k)
		v, ok := props.Get(k)
		if !ok {
			if !sc.Optional {
				errs[p] = "property is missing and it is not optional"
			}
			continue
		}
		if msg := sc.check(v); msg != "" {
			errs[p] = msg
		}
	}
	if len(errs) > 0 {
		return nil, &FormatError{Errors: errs}
	}
	return props, nil
}

// Canonical prints props in this format's canonical order.
func (f PropFormat) Canonical(p Props) string {
	return p.Canonical(f.DefaultKey(), f.Required()...)
}

// Check runs the checks of check_prop on a string value and returns
// Proxmox's message, or "" when the value is fine. Format messages come
// back as Proxmox prints them, ending in "\n" (which is what produces the
// blank line after such errors in pct's output).
// path names the value in nested messages (`net0` -> `net0.name`).
func (s *Schema) Check(path, v string) string { return s.checkPath(path, v) }

func (s *Schema) check(v string) string { return s.checkPath("", v) }

func (s *Schema) checkPath(path, v string) string {
	switch s.Type {
	case TInteger:
		if !reInteger.MatchString(v) {
			return fmt.Sprintf("type check ('integer') failed - got '%s'", v)
		}
	case TNumber:
		if !reNumber.MatchString(v) {
			return fmt.Sprintf("type check ('number') failed - got '%s'", v)
		}
	case TBoolean:
		if v != "0" && v != "1" {
			return fmt.Sprintf("type check ('boolean') failed - got '%s'", v)
		}
	}
	if s.Props != nil {
		if _, err := s.Props.Parse(path, v); err != nil {
			return "invalid format - " + errText(err)
		}
	}
	if s.Format != nil {
		if err := s.Format(v); err != nil {
			return "invalid format - " + errText(err)
		}
	}
	if s.Pattern != nil && !s.Pattern.MatchString(v) {
		return "value does not match the regex pattern"
	}
	if s.MaxLength > 0 && len(v) > s.MaxLength {
		return fmt.Sprintf("value may only be %d characters long", s.MaxLength)
	}
	if reNumber.MatchString(v) {
		f, _ := strconv.ParseFloat(v, 64)
		if s.Max != nil && f > *s.Max {
			return "value must have a maximum value of " + num(*s.Max)
		}
		if s.Min != nil && f < *s.Min {
			return "value must have a minimum value of " + num(*s.Min)
		}
	}
	if s.Enum != nil {
		found := false
		for _, e := range s.Enum {
			if e == v {
				found = true
			}
		}
		if !found {
			return fmt.Sprintf("value '%s' does not have a value in the enumeration '%s'", v, strings.Join(s.Enum, ", "))
		}
	}
	return ""
}

// errText renders an error as Perl's die text: with a trailing newline.
func errText(err error) string {
	t := err.Error()
	if !strings.HasSuffix(t, "\n") {
		t += "\n"
	}
	return t
}

func num(f float64) string {
	if f == math.Trunc(f) {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

var (
	reInteger = regexp.MustCompile(`^[+-]?\d+$`)
	reNumber  = regexp.MustCompile(`^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$`)
)

// ParseBool accepts Proxmox's boolean words (1|on|yes|true, 0|off|no|false).
func ParseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "1", "on", "yes", "true":
		return true, true
	case "0", "off", "no", "false":
		return false, true
	}
	return false, false
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func fp(f float64) *float64 { return &f }

func pat(s string) *regexp.Regexp { return regexp.MustCompile(`^(?:` + s + `)$`) }

// ---- named formats (PVE::JSONSchema and pve-container) ----

var reDNSName = regexp.MustCompile(`^(([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)\.)*([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`)

// VerifyDNSName is the dns-name format.
func VerifyDNSName(s string) error {
	if !reDNSName.MatchString(s) {
		return fmt.Errorf("value does not look like a valid DNS name")
	}
	return nil
}

// VerifyMountPath is pve-lxc-mp-string: no /./ or /../, no trailing /. or
// /.., no leading ../.
func VerifyMountPath(s string) error {
	if regexp.MustCompile(`/\.\.?/`).MatchString(s) || regexp.MustCompile(`/\.\.?$`).MatchString(s) ||
		strings.HasPrefix(s, "../") {
		return fmt.Errorf("%s contains illegal character sequences", s)
	}
	return nil
}

func verifyDevPath(s string) error {
	if regexp.MustCompile(`/\.\.?(?:/|$)`).MatchString(s) || !strings.HasPrefix(s, "/dev/") {
		return fmt.Errorf("%s is not a valid device path", s)
	}
	return nil
}

func verifyMAC(s string) error {
	if !regexp.MustCompile(`(?i)^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$`).MatchString(s) {
		return fmt.Errorf("value does not look like a valid unicast MAC address")
	}
	return nil
}

func cidrOK(s string, v6 bool) bool {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return false
	}
	a, err := netip.ParseAddr(s[:i])
	if err != nil || a.Is6() != v6 || a.Zone() != "" {
		return false
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return false
	}
	if v6 {
		return n > 7 && n <= 128
	}
	return n > 7 && n <= 32
}

func verifyIPv4Config(s string) error {
	if s == "dhcp" || s == "manual" || cidrOK(s, false) {
		return nil
	}
	return fmt.Errorf("value does not look like a valid ipv4 network configuration")
}

func verifyIPv6Config(s string) error {
	if s == "auto" || s == "dhcp" || s == "manual" || cidrOK(s, true) {
		return nil
	}
	return fmt.Errorf("value does not look like a valid ipv6 network configuration")
}

func verifyIPv4(s string) error {
	if a, err := netip.ParseAddr(s); err != nil || !a.Is4() {
		return fmt.Errorf("value does not look like a valid IPv4 address")
	}
	return nil
}

func verifyIPv6(s string) error {
	if a, err := netip.ParseAddr(s); err != nil || !a.Is6() || a.Zone() != "" {
		return fmt.Errorf("value does not look like a valid IPv6 address")
	}
	return nil
}

func verifyDiskSize(s string) error {
	if _, ok := ParseSize(s); !ok {
		return fmt.Errorf("value does not look like a valid disk size: %s", s)
	}
	return nil
}

func verifyVolumeID(s string) error {
	if _, _, err := ParseVolumeID(s); err != nil {
		return err
	}
	return nil
}

var reTag = regexp.MustCompile(`(?i)^[a-z0-9_][a-z0-9_\-+.]*$`)

func verifyTagList(s string) error {
	for _, t := range splitList(s) {
		if !reTag.MatchString(t) {
			return fmt.Errorf("invalid characters in tag")
		}
	}
	return nil
}

func verifyDNSNameList(s string) error {
	for _, t := range splitList(s) {
		if err := VerifyDNSName(t); err != nil {
			return err
		}
	}
	return nil
}

func verifyIPList(s string) error {
	for _, t := range splitList(s) {
		if _, err := netip.ParseAddr(t); err != nil {
			return fmt.Errorf("value does not look like a valid IP address")
		}
	}
	return nil
}

// splitList is PVE::Tools::split_list: separators are , ; and blanks.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == 0
	})
}

func verifyStartup(s string) error {
	for _, p := range strings.Split(s, ",") {
		if strings.TrimSpace(p) == "" {
			continue
		}
		if !regexp.MustCompile(`^((order=)?\d+|up=\d+|down=\d+)$`).MatchString(p) {
			return fmt.Errorf("unable to parse startup options")
		}
	}
	return nil
}

func verifyTimezone(s string) error {
	if s == "host" || s == "UTC" {
		return nil
	}
	if zoneTab(s) {
		return nil
	}
	return fmt.Errorf("invalid time zone '%s'", s)
}

// ---- the container schema ----

var mountOptRe = `(discard|lazytime|noatime|nodev|noexec|nosuid)`

// rootfsFormat84 is the `rootfs` property string up to pve-container 6.1.5.
var rootfsFormat84 = PropFormat{
	"volume":       {Type: TString, DefaultKey: true, Format: VerifyMountPath},
	"size":         {Type: TString, Optional: true, Format: verifyDiskSize},
	"acl":          {Type: TBoolean, Optional: true},
	"mountoptions": {Type: TString, Optional: true, Pattern: pat(mountOptRe + `(;` + mountOptRe + `)*`)},
	"ro":           {Type: TBoolean, Optional: true},
	"quota":        {Type: TBoolean, Optional: true},
	"replicate":    {Type: TBoolean, Optional: true},
	"shared":       {Type: TBoolean, Optional: true},
}

// idmapPattern is the mount point `idmap` key (pve-container 6.1.6).
var idmapPattern = pat(`passthrough|[ug]:[0-9]+:[0-9]+:[1-9][0-9]*(?:;[ug]:[0-9]+:[0-9]+:[1-9][0-9]*)*`)

func with(f PropFormat, extra PropFormat) PropFormat {
	out := PropFormat{}
	for k, v := range f {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

var (
	mountExtra84 = PropFormat{
		"backup": {Type: TBoolean, Optional: true},
		"mp":     {Type: TString, Format: VerifyMountPath},
	}
	mountFormat84 = with(rootfsFormat84, mountExtra84)
	// RootfsFormat is the `rootfs` property string of the newest version
	// (9.1: with `idmap`). Check user input with RootfsFormatFor.
	RootfsFormat = with(rootfsFormat84, PropFormat{"idmap": {Type: TString, Optional: true, Pattern: idmapPattern}})
	// MountFormat is the `mpN` property string of the newest version
	// (9.1: with `idmap` and `keepattrs`). Check user input with
	// MountFormatFor.
	MountFormat = with(RootfsFormat, with(mountExtra84, PropFormat{"keepattrs": {Type: TBoolean, Optional: true}}))
	// NetFormat is the `netN` property string of the newest version (9.1:
	// with `host-managed`). Check user input with NetFormatFor.
	NetFormat = with(netFormat84, PropFormat{"host-managed": {Type: TBoolean, Optional: true}})
)

// RootfsFormatFor is the `rootfs` property string of version v.
func RootfsFormatFor(v Version) PropFormat {
	if v.HasOCI() {
		return RootfsFormat
	}
	return rootfsFormat84
}

// MountFormatFor is the `mpN` property string of version v.
func MountFormatFor(v Version) PropFormat {
	if v.HasOCI() {
		return MountFormat
	}
	return mountFormat84
}

// NetFormatFor is the `netN` property string of version v: 8.4 and 9.0
// refuse `host-managed` with `invalid key in comma-separated list
// property: host-managed`.
func NetFormatFor(v Version) PropFormat {
	if v.HasOCI() {
		return NetFormat
	}
	return netFormat84
}

// netFormat84 is the `netN` property string of pve-container 5.3/6.0.
var netFormat84 = PropFormat{
	"type":      {Type: TString, Optional: true, Enum: []string{"veth"}},
	"name":      {Type: TString, Pattern: pat(`[-_.\w\d]+`)},
	"bridge":    {Type: TString, Optional: true, Pattern: pat(`[-_.\w\d]+`)},
	"hwaddr":    {Type: TString, Optional: true, Format: verifyMAC},
	"mtu":       {Type: TInteger, Optional: true, Min: fp(64), Max: fp(65535)},
	"ip":        {Type: TString, Optional: true, Format: verifyIPv4Config},
	"gw":        {Type: TString, Optional: true, Format: verifyIPv4},
	"ip6":       {Type: TString, Optional: true, Format: verifyIPv6Config},
	"gw6":       {Type: TString, Optional: true, Format: verifyIPv6},
	"firewall":  {Type: TBoolean, Optional: true},
	"tag":       {Type: TInteger, Optional: true, Min: fp(1), Max: fp(4094)},
	"trunks":    {Type: TString, Optional: true, Pattern: pat(`\d+(?:;\d+)*`)},
	"rate":      {Type: TNumber, Optional: true},
	"link_down": {Type: TBoolean, Optional: true},
}

// FeaturesFormat is the `features` property string.
var FeaturesFormat = PropFormat{
	"mount":        {Type: TString, Optional: true, Pattern: pat(`[a-zA-Z0-9_; ]+`)},
	"nesting":      {Type: TBoolean, Optional: true},
	"keyctl":       {Type: TBoolean, Optional: true},
	"fuse":         {Type: TBoolean, Optional: true},
	"mknod":        {Type: TBoolean, Optional: true},
	"force_rw_sys": {Type: TBoolean, Optional: true},
}

// DevFormat is the `devN` property string.
var DevFormat = PropFormat{
	"path":       {Type: TString, Optional: true, DefaultKey: true, Format: verifyDevPath},
	"mode":       {Type: TString, Optional: true, Pattern: pat(`0[0-7]{3}`)},
	"uid":        {Type: TInteger, Optional: true, Min: fp(0)},
	"gid":        {Type: TInteger, Optional: true, Min: fp(0)},
	"deny-write": {Type: TBoolean, Optional: true},
}

// UnusedFormat is the `unusedN` property string.
var UnusedFormat = PropFormat{
	"volume": {Type: TString, DefaultKey: true, Format: verifyVolumeID},
}

// Limits of indexed options.
const (
	MaxMountPoints = 256
	MaxNetworks    = 32
	MaxDevices     = 256
)

// ConfigSchema returns pve-container's $confdesc of version v: every
// option a .conf (and pct create/set) accepts there. 9.1 adds
// `entrypoint` and `env` (pve-container 6.0.15) and newer property-string
// keys. Built once per version on first use.
func ConfigSchema(v Version) map[string]*Schema {
	v = v.Or(DefaultVersion)
	schemaOnce[v].Do(func() { schemas[v] = buildSchema(v) })
	return schemas[v]
}

var (
	schemaOnce [V9_1 + 1]sync.Once
	schemas    [V9_1 + 1]map[string]*Schema
)

// Patterns of the 9.1 options (pve-container master, Config.pm): no
// control characters but tab; env is NUL-separated NAME=value items.
var (
	entrypointPattern = pat(`[^\x00-\x08\x0a-\x1F\x7F]+`)
	envPattern        = pat(`(?:\w+=[^\x00-\x08\x0a-\x1F\x7F]*)(?:\x00\w+=[^\x00-\x08\x0a-\x1F\x7F]*)*`)
)

func buildSchema(v Version) map[string]*Schema {
	m := map[string]*Schema{
		"lock": {Type: TString, Optional: true, Enum: []string{"backup", "create", "destroyed", "disk", "fstrim",
			"migrate", "mounted", "rollback", "snapshot", "snapshot-delete"}},
		"onboot":       {Type: TBoolean, Optional: true},
		"startup":      {Type: TString, Optional: true, Format: verifyStartup},
		"template":     {Type: TBoolean, Optional: true},
		"arch":         {Type: TString, Optional: true, Enum: []string{"amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"}},
		"ostype":       {Type: TString, Optional: true, Enum: OSTypes},
		"console":      {Type: TBoolean, Optional: true},
		"tty":          {Type: TInteger, Optional: true, Min: fp(0), Max: fp(6)},
		"cores":        {Type: TInteger, Optional: true, Min: fp(1), Max: fp(8192)},
		"cpulimit":     {Type: TNumber, Optional: true, Min: fp(0), Max: fp(8192)},
		"cpuunits":     {Type: TInteger, Optional: true, Min: fp(0), Max: fp(500000)},
		"memory":       {Type: TInteger, Optional: true, Min: fp(16)},
		"swap":         {Type: TInteger, Optional: true, Min: fp(0)},
		"hostname":     {Type: TString, Optional: true, Format: VerifyDNSName, MaxLength: 255},
		"description":  {Type: TString, Optional: true, MaxLength: 8192},
		"searchdomain": {Type: TString, Optional: true, Format: verifyDNSNameList},
		"nameserver":   {Type: TString, Optional: true, Format: verifyIPList},
		"timezone":     {Type: TString, Optional: true, Format: verifyTimezone},
		"rootfs":       {Type: TString, Optional: true, Props: RootfsFormat},
		"parent":       {Type: TString, Optional: true, Pattern: pat(`[a-zA-Z][a-zA-Z0-9_-]+`), MaxLength: 40},
		"snaptime":     {Type: TInteger, Optional: true, Min: fp(0)},
		"cmode":        {Type: TString, Optional: true, Enum: []string{"shell", "console", "tty"}},
		"protection":   {Type: TBoolean, Optional: true},
		"unprivileged": {Type: TBoolean, Optional: true},
		"features":     {Type: TString, Optional: true, Props: FeaturesFormat},
		"hookscript":   {Type: TString, Optional: true, Format: verifyVolumeID},
		"tags":         {Type: TString, Optional: true, Format: verifyTagList},
		"debug":        {Type: TBoolean, Optional: true},
	}
	m["rootfs"] = &Schema{Type: TString, Optional: true, Props: RootfsFormatFor(v)}
	if v.HasOCI() {
		m["entrypoint"] = &Schema{Type: TString, Optional: true, Pattern: entrypointPattern}
		m["env"] = &Schema{Type: TString, Optional: true, Pattern: envPattern}
	}
	for i := 0; i < MaxNetworks; i++ {
		m["net"+strconv.Itoa(i)] = &Schema{Type: TString, Optional: true, Props: NetFormatFor(v)}
	}
	for i := 0; i < MaxMountPoints; i++ {
		m["mp"+strconv.Itoa(i)] = &Schema{Type: TString, Optional: true, Props: MountFormatFor(v)}
		m["unused"+strconv.Itoa(i)] = &Schema{Type: TString, Optional: true, Props: UnusedFormat}
	}
	for i := 0; i < MaxDevices; i++ {
		m["dev"+strconv.Itoa(i)] = &Schema{Type: TString, Optional: true, Props: DevFormat}
	}
	return m
}

// OSTypes are the values `ostype` accepts.
var OSTypes = []string{"debian", "devuan", "ubuntu", "centos", "fedora", "opensuse", "archlinux",
	"alpine", "gentoo", "nixos", "unmanaged"}

// CheckOptionValue is pve-container's check_type for a .conf line of a
// version-v node: it returns the normalised value (booleans as 0/1,
// integers as int()) or Proxmox's reason, e.g. `unknown setting 'foo'`.
// Like check_type it checks type and format only: enum, pattern and
// bounds are the API's business, not the file reader's.
func CheckOptionValue(key, value string, v Version) (string, error) {
	sc, ok := ConfigSchema(v)[key]
	if !ok {
		return value, fmt.Errorf("unknown setting '%s'", key)
	}
	if strings.ContainsAny(value, "\n\r") {
		return value, fmt.Errorf("property contains a line feed")
	}
	switch sc.Type {
	case TBoolean:
		b, ok := ParseBool(value)
		if !ok {
			return value, fmt.Errorf("type check ('boolean') failed - got '%s'", value)
		}
		return boolStr(b), nil
	case TInteger:
		if !regexp.MustCompile(`^\d+$`).MatchString(value) {
			return value, fmt.Errorf("type check ('integer') failed - got '%s'", value)
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return value, fmt.Errorf("type check ('integer') failed - got '%s'", value)
		}
		return strconv.FormatInt(n, 10), nil
	case TNumber:
		if !regexp.MustCompile(`^(\d+)(\.\d+)?$`).MatchString(value) {
			return value, fmt.Errorf("type check ('number') failed - got '%s'", value)
		}
		return value, nil
	}
	if sc.Props != nil {
		if _, err := sc.Props.Parse("", value); err != nil {
			return value, fmt.Errorf("%s", strings.TrimSuffix(err.Error(), "\n"))
		}
	} else if sc.Format != nil {
		if err := sc.Format(value); err != nil {
			return value, err
		}
	}
	return value, nil
}
