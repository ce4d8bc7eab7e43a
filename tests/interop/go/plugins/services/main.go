// Reproduces the behaviour of a plugin using the host services of safing/portmaster PR #834's
// plugin/framework (Config, Notify, PluginManager) (fallback: the module proxy does not serve the PR).

// Command services exercises every host service once, from a goroutine
// started by its init hook (so Configure returns at once), and writes what it
// saw as one JSON object to <base_directory>/services-<plugin name>.json.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"pmplugins.test/interop/framework"
	"pmplugins.test/interop/gen/proto"
)

const waitLimit = 10 * time.Second

// observed is the file's content; every field is filled in even when a step
// failed, with the failure in Errors.
type observed struct {
	Name              string        `json:"name"`
	Privileged        bool          `json:"privileged"`
	PortmasterVersion string        `json:"portmaster_version"`
	Registered        bool          `json:"registered"`
	ReadKey           string        `json:"read_key"`
	Greeting          *string       `json:"greeting"`
	Watch             *watched      `json:"watch"`
	NotificationPick  *string       `json:"notification_action"`
	PluginManager     bool          `json:"plugin_manager"`
	Plugins           []string      `json:"plugins"`
	OtherSecret       secretAttempt `json:"other_secret"`
	Errors            []string      `json:"errors"`
	Elapsed           float64       `json:"elapsed_s"`
}

type watched struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type secretAttempt struct {
	Value *string `json:"value"`
	Error *string `json:"error"`
}

func (o *observed) fail(step string, err error) {
	o.Errors = append(o.Errors, fmt.Sprintf("%s: %s", step, err))
}

func run(ctx context.Context) {
	start := time.Now()
	name := framework.PluginName()
	privileged := framework.Default.GetConfig().GetPrivileged()

	o := &observed{
		Name:              name,
		Privileged:        privileged,
		PortmasterVersion: framework.PortmasterVersion(),
		Plugins:           []string{},
		Errors:            []string{},
	}

	cfg := framework.Config()

	// 1. create an option; the host files it under plugins/<name>/greeting.
	err := cfg.RegisterOption(ctx, &proto.Option{
		Name:        "Greeting",
		Key:         "greeting",
		Help:        "What the services plugin says.",
		Description: "Used by the interop tests.",
		OptionType:  proto.OptionType_OPTION_TYPE_STRING,
		Default:     &proto.Value{String_: "hi"},
	})
	if err != nil {
		o.fail("register option", err)
	} else {
		o.Registered = true
	}

	// 2. read it back: a privileged plugin must give the full key.
	o.ReadKey = "greeting"
	if privileged {
		o.ReadKey = fmt.Sprintf("plugins/%s/greeting", name)
	}
	if v, err := cfg.GetValue(ctx, o.ReadKey); err != nil {
		o.fail("get value", err)
	} else {
		s := v.GetString_()
		o.Greeting = &s
	}

	// 3. watch it and wait for the first change.
	watchCtx, stopWatch := context.WithTimeout(ctx, waitLimit)
	if changes, err := cfg.WatchValue(watchCtx, o.ReadKey); err != nil {
		o.fail("watch value", err)
	} else {
		select {
		case msg, ok := <-changes:
			if ok {
				o.Watch = &watched{Key: msg.GetKey(), Value: msg.GetValue().GetString_()}
			} else {
				o.fail("watch value", fmt.Errorf("stream ended without a change"))
			}
		case <-watchCtx.Done():
			o.fail("watch value", fmt.Errorf("no change within %s", waitLimit))
		}
	}
	stopWatch()

	// 4. a notification with one custom action; wait for the user's pick.
	notifyCtx, stopNotify := context.WithTimeout(ctx, waitLimit)
	picks, err := framework.Notify().CreateNotification(notifyCtx, &proto.Notification{
		EventId: name + ":hello",
		Type:    proto.NotificationType_NOTIFICATION_TYPE_PROMPT,
		Title:   "Hello from " + name,
		Message: "Press OK.",
		Actions: []*proto.NotificationAction{{Id: "ok", Text: "OK"}},
	})
	if err != nil {
		o.fail("create notification", err)
	} else {
		select {
		case id, ok := <-picks:
			if ok {
				o.NotificationPick = &id
			} else {
				o.fail("create notification", fmt.Errorf("stream ended without a pick"))
			}
		case <-notifyCtx.Done():
			o.fail("create notification", fmt.Errorf("no pick within %s", waitLimit))
		}
	}
	stopNotify()

	// 5. the plugin manager, when the host made us privileged.
	if pm := framework.PluginManager(); pm != nil {
		o.PluginManager = true
		if plugins, err := pm.ListPlugins(ctx); err != nil {
			o.fail("list plugins", err)
		} else {
			for _, p := range plugins {
				o.Plugins = append(o.Plugins, p.GetConfig().GetName())
			}
		}
	}

	// 6. another plugin's option: refused, rewritten or served, per host.
	if v, err := cfg.GetValue(ctx, "plugins/other/secret"); err != nil {
		msg := err.Error()
		o.OtherSecret.Error = &msg
	} else {
		s := v.GetString_()
		o.OtherSecret.Value = &s
	}

	o.Elapsed = time.Since(start).Seconds()
	if err := writeAtomically(filepath.Join(framework.BaseDirectory(), "services-"+name+".json"), o); err != nil {
		log.Printf("[ERROR] writing result: %s", err)
		return
	}
	log.Printf("[INFO] services: wrote result for %s", name)
}

// writeAtomically writes v as JSON to a temporary file beside path and renames
// it into place, so a reader sees either nothing or the whole object.
func writeAtomically(path string, v interface{}) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".services-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func main() {
	framework.OnInit(func(context.Context) error {
		// The RPC's context ends when Configure returns; the plugin's own
		// context lives until shutdown.
		go run(framework.Context())
		return nil
	})

	framework.Serve()
}
