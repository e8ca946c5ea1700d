package tufrepo

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestMetadataNames(t *testing.T) {
	e := newEnv(t)
	tenant := e.newTenant()
	group := uuid.NewString()
	e.publish(tenant, group, "a.pkg", []byte("A"))
	if _, err := e.repo.PrepareRoot(e.ctx, tenant); err != nil { // a pending root exists
		t.Fatal(err)
	}

	cases := []struct {
		name        string
		role        string // "" when ErrNotFound is expected
		wantVersion int64  // 0: the latest
	}{
		{"root.json", "root", 0},
		{"1.root.json", "root", 1},
		{"timestamp.json", "timestamp", 0},
		{"2.snapshot.json", "snapshot", 2},
		{"snapshot.json", "snapshot", 0},
		{"2.targets.json", "targets", 2},
		{"targets.json", "targets", 0},
		{"1.group-" + group + ".json", GroupRole(group), 1},
		{"group-" + group + ".json", GroupRole(group), 0},

		{"2.root.json", "", 0},                    // no such version yet
		{"1.timestamp.json", "", 0},               // the timestamp is never versioned
		{"9.snapshot.json", "", 0},                // no such version
		{"01.root.json", "", 0},                   // leading zero
		{"0.root.json", "", 0},                    // versions start at 1
		{"-1.root.json", "", 0},                   // sign
		{"+1.root.json", "", 0},                   // sign
		{"99999999999999999999.root.json", "", 0}, // overflows int64
		{"root", "", 0},
		{"root.JSON", "", 0},
		{"Root.json", "", 0},
		{"pending-root.json", "", 0}, // internal, never served
		{"1.pending-root.json", "", 0},
		{"../root.json", "", 0},
		{"1..root.json", "", 0},
		{"1.root.json/", "", 0},
		{"group-" + strings.ToUpper(group) + ".json", "", 0},
		{"group-../../x.json", "", 0},
		{"1.group-" + uuid.NewString() + ".json", "", 0}, // not this tenant's
		{".json", "", 0},
		{"", "", 0},
		{"1.1.root.json", "", 0},
		{"mirrors.json", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := e.repo.Metadata(e.ctx, tenant, c.name)
			if c.role == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want, _ := e.st.LatestMetadata(e.ctx, tenant, c.role)
			if c.wantVersion != 0 {
				want, _ = e.st.MetadataVersion(e.ctx, tenant, c.role, c.wantVersion)
			}
			if string(data) != string(want.JSON) {
				t.Errorf("served other bytes than %s version %d", c.role, want.Version)
			}
		})
	}

	// Another tenant's repository, or a malformed tenant id, serves nothing.
	other := e.newTenant()
	if _, err := e.repo.Metadata(e.ctx, other, "1.group-"+group+".json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tenant B served tenant A's group role: %v", err)
	}
	for _, bad := range []string{"", "..", strings.ToUpper(tenant), tenant + "/x"} {
		if _, err := e.repo.Metadata(e.ctx, bad, "root.json"); !errors.Is(err, ErrNotFound) {
			t.Errorf("tenant %q: err = %v, want ErrNotFound", bad, err)
		}
	}
}

// FuzzParseMetadataName checks that every name the parser accepts is one
// it would produce: exactly "role.json" or "N.role.json" with a valid
// role, nothing that could name a path.
func FuzzParseMetadataName(f *testing.F) {
	for _, s := range []string{"root.json", "1.root.json", "timestamp.json", "12.snapshot.json",
		"3.group-0196c1a2-5bd1-7c8e-9a1b-2f4c6d8e0a1b.json", "../root.json", "1.timestamp.json", "01.root.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		role, version, ok := parseMetadataName(name)
		if !ok {
			return
		}
		want := role + ".json"
		if version != 0 {
			want = strconv.FormatInt(version, 10) + "." + want
		}
		if name != want {
			t.Fatalf("accepted %q as %q version %d", name, role, version)
		}
		switch {
		case role == metadata.ROOT, role == metadata.TARGETS, role == metadata.SNAPSHOT:
		case role == metadata.TIMESTAMP && version == 0:
		case strings.HasPrefix(role, "group-") && isUUID(role[len("group-"):]):
		default:
			t.Fatalf("accepted role %q version %d", role, version)
		}
		if version < 0 || strings.ContainsAny(name, "/\\") {
			t.Fatalf("accepted %q", name)
		}
	})
}

func TestParseTargetFile(t *testing.T) {
	g := uuid.NewString()
	sum := strings.Repeat("0f", 32)
	cases := []struct {
		path string
		ok   bool
	}{
		{"groups/" + g + "/" + sum + ".img.pkg", true},
		{"groups/" + g + "/" + sum + ".a.b-c_d.pkg", true},
		{"groups/" + g + "/img.pkg", false}, // no hash prefix
		{"groups/" + g + "/" + strings.ToUpper(sum) + ".img.pkg", false},
		{"groups/" + g + "/" + sum[:62] + ".img.pkg", false},
		{"groups/" + g + "/" + sum + "..pkg", false},
		{"groups/" + g + "/" + sum + ".", false},
		{"groups/" + g + "/x/" + sum + ".img.pkg", false},
		{"groups/../" + sum + ".img.pkg", false},
		{"groups/" + strings.ToUpper(g) + "/" + sum + ".img.pkg", false},
		{"/groups/" + g + "/" + sum + ".img.pkg", false},
		{sum + ".img.pkg", false},
		{"", false},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			group, gotSum, name, err := ParseTargetFile(c.path)
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if c.ok && (group != g || gotSum != sum || TargetPath(group, gotSum+"."+name) != c.path) {
				t.Errorf("split into %q %q %q", group, gotSum, name)
			}
		})
	}
}

// FuzzParseTargetFile checks that an accepted path is exactly
// groups/<uuid>/<64 hex>.<name> with a valid name.
func FuzzParseTargetFile(f *testing.F) {
	f.Add("groups/0196c1a2-5bd1-7c8e-9a1b-2f4c6d8e0a1b/" + strings.Repeat("ab", 32) + ".img.pkg")
	f.Add("groups/../x")
	f.Fuzz(func(t *testing.T, path string) {
		group, sum, name, err := ParseTargetFile(path)
		if err != nil {
			return
		}
		if path != "groups/"+group+"/"+sum+"."+name || !isUUID(group) || len(sum) != 64 ||
			!targetNameRE.MatchString(name) || strings.Contains(name, "/") {
			t.Fatalf("accepted %q as %q %q %q", path, group, sum, name)
		}
	})
}
