package uplink

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestOutboxOrderAndRestart: messages come back oldest first, survive a
// reopen (an agent crash), and a write interrupted before its rename is
// forgotten.
func TestOutboxOrderAndRestart(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := o.add(message{Topic: "t", Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	seq, m, ok, err := o.head()
	if err != nil || !ok || m.Payload[0] != 0 {
		t.Fatalf("head = %d %+v %v %v; want the first message", seq, m, ok, err)
	}
	if err := o.done(seq); err != nil {
		t.Fatal(err)
	}
	// A crash mid-write leaves a temporary file.
	if err := os.WriteFile(filepath.Join(dir, ".00000000000000000009.msg.tmp-1"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}

	o, err = openOutbox(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.len(); got != 2 {
		t.Fatalf("after reopening, %d pending; want 2", got)
	}
	if err := o.add(message{Topic: "t", Payload: []byte{3}}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for range 3 {
		seq, m, ok, err := o.head()
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		got = append(got, m.Payload[0])
		if err := o.done(seq); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("order %v; want [1 2 3]", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left in the outbox: %v", entries)
	}
}

func TestOutboxFull(t *testing.T) {
	o, err := openOutbox(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		err := o.add(message{Topic: "t"})
		if want := i == 2; (err == errOutboxFull) != want {
			t.Errorf("add #%d: %v; want full = %v", i, err, want)
		}
	}
}

func TestOutboxQuarantine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, fileName(7)), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := openOutbox(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	seq, _, ok, err := o.head()
	if !ok || err == nil {
		t.Fatalf("head of a corrupt outbox: %v %v; want an error", ok, err)
	}
	if err := o.quarantine(seq); err != nil {
		t.Fatal(err)
	}
	if o.len() != 0 {
		t.Error("the corrupt message is still queued")
	}
	if _, err := os.Stat(filepath.Join(dir, fileName(7)+".bad")); err != nil {
		t.Errorf("not kept aside: %v", err)
	}
	if err := o.add(message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if seq, _, _, _ := o.head(); seq != 8 {
		t.Errorf("next sequence %d; want 8", seq)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"topic":"devices/x/t","payload":"aGk="}`))
	f.Add([]byte(`{"topic":"a/+","payload":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(data)
		if err == nil && validTopic(m.Topic) != nil {
			t.Errorf("accepted topic %q", m.Topic)
		}
	})
}
