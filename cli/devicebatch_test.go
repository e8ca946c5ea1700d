//go:build !agentonly

package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDeviceBatchCommands registers three devices from one file of
// records and claims them from a file of ids; a file with a bad record
// changes nothing.
func TestDeviceBatchCommands(t *testing.T) {
	dir := t.TempDir()
	admin := loggedIn(t, dir)
	admin.run("product", "create", "--name", "Kettle")

	var records, ids strings.Builder
	for i := range 3 {
		out := admin.run("agent", "identity", "--rot", "soft", "--state-dir", filepath.Join(dir, "dev", strconv.Itoa(i)))
		var rec deviceRecord
		if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.DeviceID == "" {
			t.Fatalf("agent identity: %q, %v", out, err)
		}
		records.WriteString(out)
		ids.WriteString(rec.DeviceID + "\n")
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(records.String()+`{"identity_public_key": "not a key", "attestation_public_key": "nor this"}`), 0o600)
	if _, err := admin.try("device", "register-batch", "--file", bad); err == nil || !strings.Contains(err.Error(), "devices[3]") {
		t.Fatalf("a bad fourth record: %v", err)
	}
	if out := admin.run("device", "list"); strings.Contains(out, strings.Fields(ids.String())[0]) {
		t.Fatalf("a refused batch registered a device:\n%s", out)
	}
	good := filepath.Join(dir, "records.json")
	os.WriteFile(good, []byte(records.String()), 0o600)
	var reg batchSummary
	admin.runJSON(&reg, "device", "register-batch", "--file", good)
	if reg.Count != 3 || strings.Join(reg.DeviceIDs, "\n")+"\n" != ids.String() {
		t.Fatalf("register-batch = %+v; want the three ids in order", reg)
	}
	idFile := filepath.Join(dir, "ids.txt")
	os.WriteFile(idFile, []byte("# line 7\n"+ids.String()), 0o600)
	mustContain(t, "claim-batch", admin.run("device", "claim-batch", "--file", idFile, "--device-group", "Kettle/Field Test"), "claimed 3 devices")
	list := admin.run("device", "list")
	for _, id := range reg.DeviceIDs {
		if !strings.Contains(list, id) {
			t.Errorf("device list lacks %s:\n%s", id, list)
		}
	}
	if _, err := admin.try("device", "claim-batch", "--file", idFile); err == nil || !strings.Contains(err.Error(), "device_ids[0]") {
		t.Errorf("claiming them again: %v", err)
	}
}
