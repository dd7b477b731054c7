package fastpath

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		ok   bool
		want call
	}{
		{argv: []string{"--root", "/r", "start", "c1"}, ok: true,
			want: call{g: globals{root: "/r", rootSet: true, logFormat: "text"}, verb: "start", id: "c1"}},
		{argv: []string{"--root=/r", "--log", "/l", "--log-format", "json", "create", "--bundle", "/b", "--pid-file", "/p", "c1"}, ok: true,
			want: call{g: globals{root: "/r", rootSet: true, log: "/l", logFormat: "json"}, verb: "create", id: "c1", bundle: "/b", pidFile: "/p"}},
		{argv: []string{"create", "-b", "/b", "--preserve-fds", "2", "--no-pivot", "c1", "--systemd-cgroup"}, ok: true,
			want: call{g: globals{logFormat: "text", systemdCgroup: true}, verb: "create", id: "c1", bundle: "/b", preserveFDs: 2, noPivot: true}},
		{argv: []string{"kill", "c1", "KILL"}, ok: true, want: call{g: globals{logFormat: "text"}, verb: "kill", id: "c1", signal: "KILL"}},
		{argv: []string{"kill", "-a", "c1"}, ok: true, want: call{g: globals{logFormat: "text"}, verb: "kill", id: "c1", signal: "SIGTERM", all: true}},
		{argv: []string{"kill", "--signal", "9", "c1"}, ok: true, want: call{g: globals{logFormat: "text"}, verb: "kill", id: "c1", signal: "9"}},
		{argv: []string{"delete", "-f", "c1"}, ok: true, want: call{g: globals{logFormat: "text"}, verb: "delete", id: "c1", force: true}},
		{argv: []string{"exec", "-e", "A=1", "c1", "sh", "-c", "x"}, ok: true,
			want: call{g: globals{logFormat: "text"}, verb: "exec", id: "c1", pass: []string{"-e", "A=1", "c1", "sh", "-c", "x"}}},
		// Everything else is the full CLI's.
		{argv: []string{"list"}},
		{argv: []string{"run", "--bundle", "/b", "c1"}},
		{argv: []string{"create", "--name", "c1", "--image", "x"}},
		{argv: []string{"create", "--pidfd-socket", "/s", "c1"}},
		{argv: []string{"start", "--help", "c1"}},
		{argv: []string{"--version"}},
		{argv: []string{"delete", "-fx", "c1"}},
		{argv: []string{"delete", "--force=false", "c1"}},
		{argv: []string{"start", "c1", "c2"}},
		{argv: []string{"start"}},
		{argv: []string{"--unknown", "start", "c1"}},
		{argv: []string{"kill", "c1", "KILL", "--signal", "TERM"}},
		{argv: []string{"create", "--preserve-fds", "-1", "c1"}},
		{argv: []string{"--debug=maybe", "start", "c1"}},
	} {
		got, ok := parse(tc.argv)
		if ok != tc.ok {
			t.Errorf("parse(%q): ok %v, want %v", tc.argv, ok, tc.ok)
			continue
		}
		if ok && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parse(%q):\n got %+v\nwant %+v", tc.argv, got, tc.want)
		}
	}
}

func TestPassthroughID(t *testing.T) {
	for _, tc := range []struct {
		verb string
		args []string
		id   string
		ok   bool
	}{
		{"exec", []string{"--cwd", "/", "-e", "A=1", "c1", "ls"}, "c1", true},
		{"exec", []string{"--tty", "c1", "ls"}, "c1", true},
		{"ps", []string{"--format", "json", "c1"}, "c1", true},
		{"update", []string{"--memory", "1M", "c1"}, "c1", true},
		{"pause", []string{"--", "c1"}, "c1", true},
		{"pause", nil, "", false},
	} {
		id, ok := PassthroughID(tc.verb, tc.args)
		if id != tc.id || ok != tc.ok {
			t.Errorf("PassthroughID(%s %q) = %q %v, want %q %v", tc.verb, tc.args, id, ok, tc.id, tc.ok)
		}
	}
}
