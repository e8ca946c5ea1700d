package sandbox

import (
	"strings"
	"testing"
)

func TestIDRange(t *testing.T) {
	r := IDRange{First: 30000, Count: 4}
	a, err := r.Assign("app-a", nil)
	if err != nil || !r.Contains(a) {
		t.Fatalf("Assign: %d, %v", a, err)
	}
	if again, _ := r.Assign("app-a", nil); again != a {
		t.Errorf("Assign is not stable: %d then %d", a, again)
	}
	taken := map[uint32]bool{a: true}
	for range 3 {
		id, err := r.Assign("app-a", taken)
		if err != nil || taken[id] || !r.Contains(id) {
			t.Fatalf("Assign past taken ids: %d, %v", id, err)
		}
		taken[id] = true
	}
	if _, err := r.Assign("app-b", taken); err == nil || !strings.Contains(err.Error(), "all 4 app ids from 30000 are taken") {
		t.Errorf("full range: %v", err)
	}
	if _, err := (IDRange{First: 100}).Assign("x", nil); err == nil {
		t.Error("a range among system users was accepted")
	}
	if d, _ := (IDRange{}).Assign("x", nil); d < 20000 || d >= 30000 {
		t.Errorf("default range gave %d", d)
	}
}

func TestStatusString(t *testing.T) {
	var s Status
	s.add(ProtSeccomp, true, "filter")
	s.add(ProtStorageQuota, false, "no mkfs.ext4")
	out := s.String()
	for _, w := range []string{"PROTECTION", "seccomp filter", "active", "storage quota", "MISSING", "no mkfs.ext4"} {
		if !strings.Contains(out, w) {
			t.Errorf("status table lacks %q:\n%s", w, out)
		}
	}
	if m := s.Missing(); len(m) != 1 || m[0].Name != ProtStorageQuota || s.Active(ProtStorageQuota) || !s.Active(ProtSeccomp) {
		t.Errorf("Missing/Active wrong: %v", m)
	}
}
