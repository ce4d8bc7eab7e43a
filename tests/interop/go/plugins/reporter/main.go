// Reproduces the behaviour of a reporter plugin written against safing/portmaster PR #834's
// plugin/framework (fallback: the module proxy does not serve the PR).

// Command reporter appends one JSON line {id, domain, verdict} per reported
// connection to the file named by the static config field "path".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"os"
	"sync"

	"pmplugins.test/interop/framework"
	"pmplugins.test/interop/gen/proto"
)

type staticConfig struct {
	Path string `json:"path"`
}

type lineWriter struct {
	mu   sync.Mutex
	path string
}

func (w *lineWriter) ReportConnection(_ context.Context, conn *proto.Connection) error {
	line, err := json.Marshal(map[string]string{
		"id":      conn.GetId(),
		"domain":  conn.GetEntity().GetDomain(),
		"verdict": conn.GetVerdict().String(),
	})
	if err != nil {
		return err
	}
	line = append(line, '\n')

	w.mu.Lock()
	defer w.mu.Unlock()

	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(line); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func main() {
	w := new(lineWriter)

	framework.OnInit(func(context.Context) error {
		var cfg staticConfig
		if err := framework.ParseStaticConfig(&cfg); err != nil {
			return err
		}
		if cfg.Path == "" {
			return errors.New(`static config needs a "path"`)
		}
		w.path = cfg.Path
		return nil
	})

	if err := framework.RegisterReporter(w); err != nil {
		log.Fatalf("failed to register reporter: %s", err)
	}

	framework.Serve()
}
