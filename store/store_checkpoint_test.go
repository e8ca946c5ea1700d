package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opensphere/sphere"
)

// TestBackgroundCheckpoint: on SQLite the WAL is copied into the database
// file by the store's own checkpointer (SQLite's automatic checkpoint is
// off), so the file grows after writes without any caller asking; and the
// data survives a close and a reopen.
func TestBackgroundCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	ctx := context.Background()
	s, err := Open(ctx, Config{DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	time.Sleep(2 * checkpointPause) // the checkpoint after the migrations
	before := size()
	tn, err := s.CreateTenant(ctx, "A", "")
	if err != nil {
		t.Fatal(err)
	}
	ts := s.Tenant(tn.ID)
	p, _ := ts.CreateProduct(ctx, "Lamp", "")
	gs, _ := ts.ListDeviceGroups(ctx, DeviceGroupFilter{Product: p.ID}, PageRequest{})
	d, err := s.RegisterDevice(ctx, newRegistration(t))
	if err != nil {
		t.Fatal(err)
	}
	if d, err = ts.ClaimDevice(ctx, d.ID, gs.Items[0].ID); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	events := make([]sphere.FailureEvent, 1000)
	for i := range events {
		events[i] = sphere.FailureEvent{ID: fmt.Sprintf("%032x", i+1), Class: "app",
			Category: sphere.FailureAppExit, Description: "exit code 1", ComponentID: "blinky", ImageID: "img-1", Version: "1.0.0",
			Count: 1, FirstTime: now, LastTime: now}
	}
	if _, err := s.AddFailureReports(ctx, d, events); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("the database file stayed at %d bytes: nothing checkpointed the WAL", before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err == nil {
		t.Log("a second Close returned nil") // database/sql's own answer; it must not panic or hang
	}
	s, err = Open(ctx, Config{DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	page, err := s.Tenant(tn.ID).ListFailureReports(ctx, FailureFilter{}, PageRequest{Size: 1000})
	if err != nil || len(page.Items) != len(events) {
		t.Fatalf("after reopening: %d reports, %v; want %d", len(page.Items), err, len(events))
	}
}
