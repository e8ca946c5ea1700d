package image

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReadHeader: no input makes ReadHeader panic; every error wraps
// ErrFormat or ErrCorrupt; every header it accepts holds metadata that
// validates, and verifying the rest as payload fails only with ErrCorrupt.
func FuzzReadHeader(f *testing.F) {
	key := newKey(f)
	app, _ := pack(f, appMetadata(), randomBytes(1, 40<<10), key)
	osPkg, _ := pack(f, osMetadata(), []byte("rootfs"), key)
	empty, _ := pack(f, osMetadata(), nil, key)
	v1md := appMetadata()
	v1md.FormatVersion = 1
	v1, _ := pack(f, v1md, randomBytes(2, 300<<10), key)
	for _, seed := range [][]byte{app, osPkg, empty, v1, app[:100], osPkg[:len(osPkg)-3], []byte(Magic), nil, []byte("OSPHPKG1\x00\x00\x00\x02{}")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		h, err := ReadHeader(r)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error wraps neither ErrFormat nor ErrCorrupt: %v", err)
			}
			return
		}
		if err := h.Metadata.Validate(); err != nil {
			t.Fatalf("accepted metadata does not validate: %v", err)
		}
		if h.ImageID() == "" || len(h.MetadataJSON) == 0 {
			t.Fatal("accepted header without metadata bytes")
		}
		if err := VerifyPayload(r, h); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("VerifyPayload error does not wrap ErrCorrupt: %v", err)
		}
		if err := h.VerifySignature(&key.PublicKey); err != nil && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("VerifySignature error wraps neither ErrUnknownKey nor ErrBadSignature: %v", err)
		}
	})
}

// FuzzParseManifest: no input makes ParseManifest panic, and every manifest
// it accepts validates and has a canonical form that parses back to the same
// canonical form.
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		manifestWith(`{}`),
		manifestWith(`{"AllowedConnections":["*.example.com","[::1]:443","10.0.0.1:80"],"AllowedTcpServerPorts":[80],"Gpio":[1,2],"Uart":["ISU0"],"MutableStorage":{"SizeKB":8},"PowerControls":["ForceReboot"],"NetworkConfig":true}`),
		manifestWith(`{"Gpios":[1]}`),
		manifestWith(`{"gpio":[1],"gpio":[2]}`),
		`{"SchemaVersion":1,"Name":"x","ComponentId":"3f0c2b5e-7d4a-4c1e-9b8f-2a6d5e4c3b21","EntryPoint":"/a","CmdArgs":["\u0000"]}`,
		`[]`, `null`, `{"Capabilities":{"MutableStorage":{"SizeKB":1e3}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted manifest does not validate: %v", err)
		}
		enc, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		m2, err := ParseManifest(enc)
		if err != nil {
			t.Fatalf("canonical form %s does not parse: %v", enc, err)
		}
		enc2, err := m2.Marshal()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("canonical form is not stable: %s then %s (%v)", enc, enc2, err)
		}
	})
}

// FuzzChunks: the chunk index of any input covers it exactly with chunks
// of allowed sizes. The chunker is a dependency; this checks our use of it
// (offsets, digests, the end of input) on inputs a fuzzer picks.
func FuzzChunks(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add(randomBytes(1, 4<<10), uint8(200))
	f.Add(make([]byte, 4<<10), uint8(70))
	f.Fuzz(func(t *testing.T, data []byte, repeat uint8) {
		if len(data) > 4<<10 {
			data = data[:4<<10]
		}
		// Repeat the input to reach past the chunk size limits while the
		// fuzzer works on small inputs.
		in := bytes.Repeat(data, int(repeat)+1)
		for _, ch := range chunkings {
			cs, err := ch.Chunks(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			checkCover(t, ch, in, cs)
		}
	})
}
