package pvecfg

import "testing"

func TestNormalizeTags(t *testing.T) {
	for in, want := range map[string]string{
		"nexcage":               "nexcage",
		"Web;db,web  Prod":      "db;prod;web",
		"b a\tc":                "a;b;c",
		"x\x00Y":                "x;y",
		"  ;,":                  "",
		"B_1;a-2;A-2;c.3;c+4":   "a-2;b_1;c+4;c.3",
		"zeta;Alpha;alpha;BETA": "alpha;beta;zeta",
	} {
		if got := NormalizeTags(in); got != want {
			t.Errorf("NormalizeTags(%q) = %q, want %q", in, got, want)
		}
	}
}
