// Command ollama_render executes an Ollama Modelfile TEMPLATE the way the Ollama server does,
// so tests can compare it byte for byte with Hugging Face's apply_chat_template.
//
// stdin:  {"template": "...", "messages": [{"role": "...", "content": "..."}, ...]}
// stdout: the rendered prompt, nothing added. Errors go to stderr with a non-zero exit.
//
// It mirrors github.com/ollama/ollama template/template.go: Parse, Template, collate and the
// Messages branch of Execute. The message list must be the one Ollama's ChatHandler builds
// (Modelfile SYSTEM prepended when the first request message is not a system message).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/template"
	"text/template/parse"
)

// Message has the fields of ollama api.Message that a text-only chat template can use.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type input struct {
	Template string    `json:"template"`
	Messages []Message `json:"messages"`
}

// funcs mirrors template.go's funcs, so a template that calls json parses here as it does there.
var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
}

// usesMessages stands in for template.go's Vars() check: without .Messages Ollama takes its
// legacy Prompt/Response path, which this harness does not mirror.
var usesMessages = regexp.MustCompile(`(?i)\.messages\b`)

// collate mirrors template.go collate: all system contents joined by "\n\n"; consecutive
// messages of the same role merged (contents joined by "\n\n"); system messages stay in the list.
func collate(msgs []Message) (string, []*Message) {
	var system []string
	var collated []*Message
	for i := range msgs {
		msg := msgs[i]
		if msg.Role == "system" {
			system = append(system, msg.Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msg.Role {
			collated[len(collated)-1].Content += "\n\n" + msg.Content
		} else {
			collated = append(collated, &msg)
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ollama_render: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fail("bad JSON on stdin: %v", err)
	}

	// Parse: a bare parse.Tree with SkipFuncCheck, as template.go's Parse builds it.
	tree := parse.New("")
	tree.Mode = tree.Mode | parse.SkipFuncCheck
	tree, err := tree.Parse(in.Template, "", "", map[string]*parse.Tree{})
	if err != nil {
		fail("parse: %v", err)
	}
	if !usesMessages.MatchString(in.Template) {
		fail("template does not use .Messages; Ollama would render it through its legacy path")
	}

	// Template() and the Messages branch of Execute.
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).AddParseTree("", tree)
	if err != nil {
		fail("template: %v", err)
	}
	system, messages := collate(in.Messages)
	var out bytes.Buffer
	if err := tmpl.Execute(&out, map[string]any{
		"System":   system,
		"Messages": messages,
		"Tools":    []any(nil), // api.Tools is a nil slice when the request has no tools
		"Response": "",
	}); err != nil {
		fail("execute: %v", err)
	}
	if _, err := os.Stdout.Write(out.Bytes()); err != nil {
		fail("write: %v", err)
	}
}
