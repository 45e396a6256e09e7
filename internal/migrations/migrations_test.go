package migrations

import (
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	ms, err := Load(fstest.MapFS{
		"m/002_counts.sql": {Data: []byte("two")},
		"m/001_votes.sql":  {Data: []byte("one")},
		"m/010_more.sql":   {Data: []byte("ten")},
	}, "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].Version != 1 || ms[0].Name != "votes" || ms[0].SQL != "one" || ms[1].Version != 2 || ms[2].Version != 10 {
		t.Fatalf("got %+v, want versions 1, 2, 10 in order", ms)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"no number":    {"m/votes.sql": {}},
		"zero":         {"m/000_x.sql": {}},
		"not sql":      {"m/001_x.txt": {}},
		"same version": {"m/001_a.sql": {}, "m/1_b.sql": {}},
	} {
		if _, err := Load(fsys, "m"); err == nil {
			t.Errorf("%s: loaded, want an error", name)
		}
	}
}
