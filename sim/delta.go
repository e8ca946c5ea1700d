package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
	"github.com/opensphere/sphere/fetch"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/updates"
)

// DeltaReport is the outcome of the delta scenario: what a device holding
// version 1 fetched to assemble version 2.
type DeltaReport struct {
	ImageBytes   int64 `json:"image_bytes"`   // the payload
	ChangedBytes int64 `json:"changed_bytes"` // overwritten in place
	Places       int   `json:"places"`
	// PackageBytes is the full version 2 package; Transferred what the
	// device downloaded instead, in Requests HTTP Range requests.
	PackageBytes int64         `json:"package_bytes"`
	Transferred  int64         `json:"transferred_bytes"`
	Ratio        float64       `json:"ratio"`
	Requests     int           `json:"requests"`
	Took         time.Duration `json:"took_ns"`
}

// deltaFraction is the share of the image's bytes that version 2 changes.
const deltaFraction = 0.05

// runDelta packs an image of cfg.DeltaMiB pseudo-random bytes and a second
// version with 5 % of them overwritten in cfg.DeltaPlaces places, uploads
// both with a new publisher key, deploys version 2 to the fleet's group,
// and has the (one) device, holding version 1's payload, check for updates
// and assemble version 2 over mutual TLS with fetch.Assemble.
func runDelta(ctx context.Context, cfg Config, c *client.Client, fl fleet, rep *Report) (*DeltaReport, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err := c.Do(ctx, "POST", fl.tenant+"/signing-keys", nil, api.AddSigningKey{Name: fmt.Sprintf("sim delta %d", time.Now().UnixNano()%1e9), PublicKey: pub}, nil); err != nil {
		return nil, err
	}
	size := cfg.DeltaMiB << 20
	v1 := make([]byte, size)
	rng := mrand.NewChaCha8([32]byte{7})
	rng.Read(v1)
	v2 := bytes.Clone(v1)
	region := int(float64(size)*deltaFraction) / cfg.DeltaPlaces
	for i := range cfg.DeltaPlaces {
		at := (2*i + 1) * size / (2 * cfg.DeltaPlaces)
		rng.Read(v2[at : at+region])
	}
	component := "5e1a9c3b-7d2f-4e8a-9b6c-0d1e2f3a4b5c"
	var ims [2]sphere.Image
	for i, payload := range [][]byte{v1, v2} {
		version := fmt.Sprintf("%d.0.%d", i+1, time.Now().UnixNano()%1e9)
		md := image.Metadata{Kind: image.KindApp, ComponentID: component, Name: "sim-delta", Version: version, SecurityVersion: 1,
			BuildTime:   time.Now().UTC().Truncate(time.Second),
			AppManifest: &image.AppManifest{SchemaVersion: 1, Name: "sim-delta", ComponentId: component, EntryPoint: "/bin/sim"}}
		var pkg bytes.Buffer
		if _, err := image.Pack(&pkg, md, bytes.NewReader(payload), key); err != nil {
			return nil, err
		}
		if err := c.Upload(ctx, fl.tenant+"/images", &pkg, &ims[i]); err != nil {
			return nil, fmt.Errorf("uploading version %d: %w", i+1, err)
		}
	}
	if err := c.Do(ctx, "POST", fl.tenant+"/deployments", nil, api.CreateDeployment{DeviceGroup: fl.groupID, ImageIDs: []string{ims[1].ID}, Waves: []int{100}}, nil); err != nil {
		return nil, err
	}
	cfg.Progress("uploaded two %d MiB versions; version 2 deployed", cfg.DeltaMiB)

	// The device holds version 1's payload in its slot.
	d := fl.devs[0]
	slot := filepath.Join(cfg.Dir, "slot-a")
	if err := os.WriteFile(slot, v1, 0o600); err != nil {
		return nil, err
	}
	idx, err := fetch.IndexFiles(slot)
	if err != nil {
		return nil, err
	}
	defer idx.Close()
	check, fetchRec := newRecorder(), newRecorder()
	t := time.Now()
	var res updates.CheckResult
	err = d.agent.Post(ctx, "/device/v1/updates/check", updates.Report{}, &res)
	check.observe(t, err)
	rep.Ops = append(rep.Ops, check.op("update-check"))
	if err != nil {
		return nil, err
	}
	if len(res.Targets) != 1 || res.Targets[0].ImageID != ims[1].ID {
		return nil, fmt.Errorf("the device was offered %+v, not version 2 (%s): %v", res.Targets, ims[1].ID, res.Reasons)
	}
	tg := res.Targets[0]
	url := cfg.Server + "/device/v1/targets/groups/" + fl.groupID + "/" + tg.SHA256 + "." + tg.ImageID + ".pkg"
	dst := filepath.Join(cfg.Dir, "v2.pkg")
	t = time.Now()
	st, err := fetch.Assemble(ctx, d.agent.Client(), url, dst, fetch.Want{Size: tg.Size, SHA256: tg.SHA256}, idx, fetch.Options{Retries: 2})
	fetchRec.observe(t, err)
	rep.Ops = append(rep.Ops, fetchRec.op("delta-assemble"))
	if err != nil {
		return nil, err
	}
	os.Remove(dst)
	return &DeltaReport{ImageBytes: int64(size), ChangedBytes: int64(region * cfg.DeltaPlaces), Places: cfg.DeltaPlaces,
		PackageBytes: tg.Size, Transferred: st.BytesDownloaded, Ratio: float64(st.BytesDownloaded) / float64(tg.Size),
		Requests: st.Requests, Took: time.Since(t)}, nil
}
