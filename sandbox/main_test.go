package sandbox_test

import (
	"os"
	"testing"

	"github.com/opensphere/sphere/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.Init() // the compartments these tests start re-execute this binary
	os.Exit(m.Run())
}
