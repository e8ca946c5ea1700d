package cli

import (
	"context"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/supervisor"
)

// runAgent runs the device agent's parts together until ctx ends: the
// attestation loop, the app supervisor and the local admin socket.
func runAgent(ctx context.Context, ag *agent.Agent, r rot.RootOfTrust, log *slog.Logger, f *agentFlags) error {
	sup := supervisor.New(supervisor.Config{Logger: log.With("part", "supervisor")})
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
	g.Go(func() error { return ag.Run(ctx) })
	return g.Wait()
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
