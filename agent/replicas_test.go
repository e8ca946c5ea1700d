package agent

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/attest"
	"github.com/opensphere/sphere/ca"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/store"
	"github.com/opensphere/sphere/verifier"
)

// TestChallengeAcrossReplicas: two service replicas that share a database
// and a key-encryption key (and nothing in memory) accept each other's
// challenges, and a challenge answered at one is refused as replayed at
// the other. Runs on SQLite, and on PostgreSQL when SPHERE_TEST_POSTGRES
// is set, where replicas really are separate processes in production.
func TestChallengeAcrossReplicas(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		dsn := filepath.Join(t.TempDir(), "shared.db")
		replicas(t, dsn, dsn)
	})
	t.Run("postgres", func(t *testing.T) {
		base := os.Getenv("SPHERE_TEST_POSTGRES")
		if base == "" {
			t.Skip("SPHERE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); skipping the PostgreSQL run")
		}
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Fatal(err)
		}
		schema := fmt.Sprintf("sphere_agent_%d", time.Now().UnixNano())
		if _, err := db.Exec(`CREATE SCHEMA "` + schema + `"`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Exec(`DROP SCHEMA "` + schema + `" CASCADE`); db.Close() })
		dsn := store.PostgresSchemaDSN(base, schema)
		replicas(t, dsn, dsn)
	})
}

func replicas(t *testing.T, dsnA, dsnB string) {
	ctx := context.Background()
	kek, _ := ca.NewKEK(bytes.Repeat([]byte{3}, 32))
	open := func(dsn string) (*store.Store, *verifier.Service) {
		st, err := store.Open(ctx, store.Config{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		authority, err := ca.New(ctx, ca.Config{Store: st, KEK: kek})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := verifier.New(verifier.Config{Store: st, CA: authority, MACKey: kek.Derive("challenge mac")})
		if err != nil {
			t.Fatal(err)
		}
		return st, svc
	}
	st, a := open(dsnA)
	_, b := open(dsnB)

	// One enrolled soft device, allowed to run what it measures.
	tn, _ := st.CreateTenant(ctx, "Replicas", "")
	ts := st.Tenant(tn.ID)
	p, _ := ts.CreateProduct(ctx, "Gateway", "")
	gs, _ := ts.ListDeviceGroups(ctx, store.DeviceGroupFilter{Product: p.ID, Name: "Development"}, store.PageRequest{})
	r, err := rot.OpenSoft(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := IdentityRecord(r)
	if _, err := st.RegisterDevice(ctx, store.Registration{IdentityPublicKey: []byte(rec.IdentityPublicKey), AttestationPublicKey: []byte(rec.AttestationPublicKey), RoT: rec.RoT}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ClaimDevice(ctx, rec.DeviceID, gs.Items[0].ID); err != nil {
		t.Fatal(err)
	}
	r.ResetMeasurements()
	ev := rot.Event{Type: "agent", Name: "sphere", Digest: "5f" + string(bytes.Repeat([]byte("0"), 62))}
	r.Extend(ev)
	ts.AllowMeasurement(ctx, ev.Type, ev.Digest, "", "")

	// A challenge from replica A is answered at replica B...
	ch := a.NewChallenge(ctx, rec.DeviceID)
	e := evidence(t, r, rec.DeviceID, ch.Nonce)
	res, err := b.Attest(ctx, &e)
	if err != nil || res.Result != sphere.AttestHealthy {
		t.Fatalf("challenge of A answered at B: %+v, %v; want healthy", res, err)
	}
	// ...and the same answer replayed at A is refused.
	res, err = a.Attest(ctx, &e)
	if err != nil || res.Reason != attest.ReasonNonceReplayed {
		t.Fatalf("replay at the other replica: %+v, %v; want %s", res, err, attest.ReasonNonceReplayed)
	}
}
