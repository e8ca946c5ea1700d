package cli

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/supervisor"
	"github.com/opensphere/sphere/uplink"
)

// runAgent runs the device agent's parts together until ctx ends: the
// attestation loop, the app supervisor and the local admin socket.
func runAgent(ctx context.Context, ag *agent.Agent, r rot.RootOfTrust, log *slog.Logger, f *agentFlags) error {
	sup := supervisor.New(supervisor.Config{Logger: log.With("part", "supervisor"),
		OnEvent: func(e supervisor.Event) { ag.RecordFailure(appFailure(e)) }})
	defer sup.Close()
	g, ctx := errgroup.WithContext(ctx)
	if f.adminSocket != "" {
		l, err := localapi.Listen(f.adminSocket, 0o600)
		if err != nil {
			return err
		}
		adm := &localapi.Admin{Apps: sup, Status: func() localapi.Status { return agentStatus(ag, r, f) }}
		g.Go(func() error { return localapi.Serve(ctx, l, adm.Handler()) })
	}
	var up *uplink.Client
	if f.mqttBroker != "" {
		roots, err := readPool("--mqtt-ca-file", f.mqttCAFile)
		if err != nil {
			return err
		}
		up, err = uplink.New(uplink.Config{Broker: f.mqttBroker, RootCAs: roots, Cert: ag.TLSCertificate,
			OutboxDir: filepath.Join(f.stateDir, "uplink-outbox"), SessionExpiry: time.Hour, Logger: log.With("part", "uplink")})
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			up.Close(cctx)
		}()
	}
	if f.appSocket != "" {
		// Every app may connect; the uid the kernel reports says which app
		// is calling, and each route checks that app's capabilities.
		l, err := localapi.Listen(f.appSocket, 0o666)
		if err != nil {
			return err
		}
		api := &localapi.AppAPI{Tenant: ag.TenantID, AppByUID: appByUID(sup)}
		if up != nil {
			api.Uplink = up
		}
		g.Go(func() error { return localapi.Serve(ctx, l, api.Handler()) })
	}
	g.Go(func() error { return ag.Run(ctx) })
	return g.Wait()
}

// appByUID says which installed app runs as a uid.
// TODO(sandbox): apps get their own uids from the sandbox; until it is
// wired in, apps run as the agent's user and no caller is an app.
func appByUID(*supervisor.Supervisor) func(int) (supervisor.App, bool) {
	return func(int) (supervisor.App, bool) { return supervisor.App{}, false }
}

// agentStatus is the agent's part of `sphere agent status`.
func agentStatus(ag *agent.Agent, r rot.RootOfTrust, f *agentFlags) localapi.Status {
	st := localapi.Status{DeviceID: ag.DeviceID(), Server: f.server, RoT: string(r.Kind()), Protections: []localapi.Protection{}}
	if c := ag.Certificate(); c != nil {
		t := c.NotAfter.UTC()
		st.CertificateNotAfter = &t
	}
	last := ag.LastResult()
	st.LastAttestation, st.LastAttestationReason = string(last.Result), string(last.Reason)
	return st
}

// appFailure turns an app's exit, crash or restart loop into a failure
// report.
func appFailure(e supervisor.Event) sphere.FailureEvent {
	ev := sphere.FailureEvent{Class: sphere.FailureClassApp, Description: e.Description, ComponentID: e.App.ComponentID,
		ImageID: e.App.ImageID, Version: e.App.Version, FirstTime: e.Time, LastTime: e.Time}
	switch e.Kind {
	case supervisor.EventCrash:
		ev.Category, ev.Signal = sphere.FailureAppCrash, e.Signal
	case supervisor.EventRestartLoop:
		ev.Category = sphere.FailureAppRestartLoop
	default:
		code := e.ExitCode
		ev.Category, ev.ExitCode = sphere.FailureAppExit, &code
	}
	return ev
}
