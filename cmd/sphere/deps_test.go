package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// serviceOnly are packages of the security service and the admin CLI that
// the device binary (-tags agentonly) must not link: they are most of the
// full binary's size and of an idle agent's resident file pages.
var serviceOnly = []string{
	"modernc.org/sqlite",
	"github.com/jackc/pgx/v5",
	"github.com/prometheus/client_golang/prometheus",
	"github.com/opensphere/sphere/store",
	"github.com/opensphere/sphere/server",
	"github.com/opensphere/sphere/blob",
	"github.com/opensphere/sphere/ca",
	"github.com/opensphere/sphere/verifier",
	"github.com/opensphere/sphere/updates",
	"github.com/opensphere/sphere/tufrepo",
	"github.com/opensphere/sphere/sim",
}

// deps lists the packages the sphere binary links with the build flags.
func deps(t *testing.T, flags ...string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", append(append([]string{"list", "-deps"}, flags...), ".")...).Output()
	if err != nil {
		t.Fatalf("go list -deps %v: %v", flags, err)
	}
	set := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		set[p] = true
	}
	return set
}

// TestAgentOnlyDeps runs go list (go test puts its go command first on
// PATH) on both builds of the binary.
func TestAgentOnlyDeps(t *testing.T) {
	full, agent := deps(t), deps(t, "-tags", "agentonly")
	for _, p := range serviceOnly {
		if !full[p] {
			// The list above is stale: a check against a name that is
			// never linked would pass forever.
			t.Errorf("the full build does not link %s; update serviceOnly", p)
		}
		if agent[p] {
			t.Errorf("the agentonly build links %s; the device binary must not (docs/agent.md)", p)
		}
	}
	if !agent["github.com/opensphere/sphere/agent"] {
		t.Error("the agentonly build does not link the agent")
	}
}
