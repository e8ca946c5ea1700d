package agent

import (
	"os"
	"testing"

	"github.com/opensphere/sphere/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.Init() // the app compartments tests start re-execute this binary
	os.Exit(m.Run())
}
