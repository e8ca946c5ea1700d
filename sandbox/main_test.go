package sandbox_test

import (
	"os"
	"testing"

	"github.com/opensphere/sphere/sandbox"
)

// afterAll runs once all tests are done, such as removing the built apps.
var afterAll []func()

func TestMain(m *testing.M) {
	sandbox.Init() // the compartments these tests start re-execute this binary
	code := m.Run()
	for _, f := range afterAll {
		f()
	}
	os.Exit(code)
}
