package sim

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/api"
	"github.com/opensphere/sphere/client"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/store"
)

// setup makes the devices' roots of trust and agents (in parallel),
// registers and claims them through the bulk admin routes (10,000 a call),
// and allows what they measure, in a new product's Field Test group.
func setup(ctx context.Context, cfg Config, c *client.Client, roots *x509.CertPool, dial *dialer) (fleet, error) {
	tp := "/api/v1/tenants/" + url.PathEscape(cfg.Tenant)
	var t sphere.Tenant
	if err := c.Do(ctx, "GET", tp, nil, nil, &t); err != nil {
		return fleet{}, fmt.Errorf("tenant %q: %w", cfg.Tenant, err)
	}
	productName := "Sim " + fmt.Sprint(time.Now().UnixNano()%1_000_000_000)
	if err := c.Do(ctx, "POST", tp+"/products", nil, api.CreateProduct{Name: productName}, nil); err != nil {
		return fleet{}, err
	}
	var gs sphere.Page[sphere.DeviceGroup]
	if err := c.Do(ctx, "GET", tp+"/device-groups", url.Values{"product": {productName}, "name": {"Field Test"}}, nil, &gs); err != nil {
		return fleet{}, err
	}
	if len(gs.Items) != 1 {
		return fleet{}, errors.New("the new product has no Field Test group")
	}
	fl := fleet{tenant: tp, groupID: gs.Items[0].ID, devs: make([]*device, cfg.Devices)}

	// Every device measures the same agent "binary": a small file naming
	// this one, so that a large fleet does not hash the executable once
	// per device.
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fleet{}, err
	}
	bin := filepath.Join(cfg.Dir, "agent-binary")
	exe, _ := os.Executable()
	if err := os.WriteFile(bin, []byte("sphere sim devices: "+exe+"\n"), 0o600); err != nil {
		return fleet{}, err
	}
	// The devices, each with its own soft root of trust and agent.
	recs := make([]api.RegisterDevice, cfg.Devices)
	ids := make([]string, cfg.Devices)
	for i := range fl.devs {
		fl.devs[i] = &device{}
	}
	var errMu sync.Mutex
	var firstErr error
	var next, made atomic.Int64
	quiet := slog.New(slog.DiscardHandler)
	each(ctx, fl.devs, cfg.Concurrency, 0, 0, func(d *device) {
		i := int(next.Add(1)) - 1
		err := func() error {
			dir := filepath.Join(cfg.Dir, fmt.Sprintf("d%07d", i))
			r, err := rot.OpenSoft(dir)
			if err != nil {
				return err
			}
			rec, err := agent.IdentityRecord(r)
			if err != nil {
				return err
			}
			a, err := agent.New(agent.Config{Server: cfg.Server, StateDir: dir, RoT: r, ServerRoots: roots, Logger: quiet,
				DialContext: dial.DialContext, AgentBinary: bin})
			if err != nil {
				return err
			}
			if err := a.Measure(); err != nil {
				return err
			}
			recs[i] = api.RegisterDevice{IdentityPublicKey: rec.IdentityPublicKey, AttestationPublicKey: rec.AttestationPublicKey, RoT: rec.RoT}
			ids[i] = rec.DeviceID
			d.rot, d.agent = r, a
			return nil
		}()
		if err != nil {
			errMu.Lock()
			firstErr = cmp.Or(firstErr, err)
			errMu.Unlock()
		}
		if n := made.Add(1); n%10_000 == 0 {
			cfg.Progress("made %d devices", n)
		}
	})
	if firstErr != nil {
		return fleet{}, firstErr
	}
	// Registered by the operator, claimed by the tenant, in bulk.
	for lo := 0; lo < len(recs); lo += store.MaxBatch {
		hi := min(lo+store.MaxBatch, len(recs))
		if err := c.Do(ctx, "POST", "/api/v1/device-batches", nil, api.RegisterDevices{Devices: recs[lo:hi]}, nil); err != nil {
			return fleet{}, fmt.Errorf("registering devices %d to %d: %w", lo, hi-1, err)
		}
		if err := c.Do(ctx, "POST", tp+"/device-claims", nil, api.ClaimDevices{DeviceIDs: ids[lo:hi], DeviceGroup: fl.groupID}, nil); err != nil {
			return fleet{}, fmt.Errorf("claiming devices %d to %d: %w", lo, hi-1, err)
		}
		cfg.Progress("registered and claimed %d devices", hi)
	}
	if err := populate(ctx, cfg, c, fl); err != nil {
		return fleet{}, err
	}
	// Every device runs the same agent with the same settings.
	for _, e := range fl.devs[0].rot.EventLog() {
		if err := c.Do(ctx, "POST", tp+"/measurements", nil, api.AllowMeasurement{Type: e.Type, Digest: e.Digest, Name: "sim " + e.Name}, nil); err != nil {
			return fleet{}, err
		}
	}
	return fl, nil
}

// populate registers and claims cfg.Population devices that only have
// keys, in batches, into the fleet's group.
func populate(ctx context.Context, cfg Config, c *client.Client, fl fleet) error {
	if cfg.Population > 1_000_000 {
		return errors.New("population: at most 1000000")
	}
	for lo := 0; lo < cfg.Population; lo += store.MaxBatch {
		n := min(store.MaxBatch, cfg.Population-lo)
		recs := make([]api.RegisterDevice, n)
		var wg sync.WaitGroup
		for w := range runtime.NumCPU() {
			wg.Go(func() {
				for i := w; i < n; i += runtime.NumCPU() {
					recs[i] = api.RegisterDevice{IdentityPublicKey: newPublicKeyPEM(), AttestationPublicKey: newPublicKeyPEM(), RoT: string(rot.KindSoft)}
				}
			})
		}
		wg.Wait()
		var b api.DeviceBatch
		if err := c.Do(ctx, "POST", "/api/v1/device-batches", nil, api.RegisterDevices{Devices: recs}, &b); err != nil {
			return fmt.Errorf("population: %w", err)
		}
		if err := c.Do(ctx, "POST", fl.tenant+"/device-claims", nil, api.ClaimDevices{DeviceIDs: b.DeviceIDs, DeviceGroup: fl.groupID}, nil); err != nil {
			return fmt.Errorf("population: %w", err)
		}
		cfg.Progress("population: %d devices registered and claimed", lo+n)
	}
	return nil
}

func newPublicKeyPEM() string {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
