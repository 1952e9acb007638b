// Renders Go templates the way ESO's template engine v2 does, for secretsync's differential
// tests: text/template with missingkey=error, sprig's text functions without env/expandenv,
// ESO's toYaml/fromYaml/filterPEM, and the data as map[string]string.
//
// Input (stdin): a JSON array of {"template": "...", "data": {"key": "base64 of the value"}}.
// Output (stdout): one JSON object per line, {"out": "base64"} or {"err": "message"}.
// The clock is fixed (sprig's `now` gives 2024-03-05T06:07:08Z) so date functions compare.
//
// Build in GOPATH mode: GO111MODULE=off GOPATH=/usr/share/gocode go build.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type request struct {
	Template string            `json:"template"`
	Data     map[string]string `json:"data"`
}

type response struct {
	Out *string `json:"out,omitempty"`
	Err *string `json:"err,omitempty"`
}

var fixedNow = time.Date(2024, 3, 5, 6, 7, 8, 0, time.UTC)

// toYAML and fromYAML behave as ESO's: marshal errors give "", parse errors are put in
// the map under "Error".
func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(str string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(str), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

// filterPEM keeps the PEM blocks of one type (case-insensitive), re-encoded, in order.
func filterPEM(pemType, input string) (string, error) {
	if i := strings.Index(input, "-----BEGIN"); i >= 0 {
		input = input[i:]
	}
	data := []byte(input)
	var out []byte
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			if len(out) == 0 && len(rest) != 0 {
				return "", errors.New("error filtering pem: found junk")
			}
			break
		}
		data = rest
		if !strings.EqualFold(block.Type, pemType) {
			continue
		}
		out = append(out, pem.EncodeToMemory(block)...)
	}
	return string(out), nil
}

func funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	delete(f, "getHostByName")
	f["now"] = func() time.Time { return fixedNow }
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["filterPEM"] = filterPEM
	return f
}

func render(r request, fm template.FuncMap) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	t, err := template.New("t").Option("missingkey=error").Funcs(fm).Parse(r.Template)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, r.Data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func main() {
	var reqs []request
	if err := json.NewDecoder(bufio.NewReader(os.Stdin)).Decode(&reqs); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	fm := funcs()
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	for _, r := range reqs {
		data := make(map[string]string, len(r.Data))
		for k, v := range r.Data {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				fmt.Fprintln(os.Stderr, "bad data:", err)
				os.Exit(2)
			}
			data[k] = string(b)
		}
		r.Data = data
		out, err := render(r, fm)
		var resp response
		if err != nil {
			s := err.Error()
			resp.Err = &s
		} else {
			s := base64.StdEncoding.EncodeToString(out)
			resp.Out = &s
		}
		if err := enc.Encode(resp); err != nil {
			os.Exit(3)
		}
	}
	w.Flush()
}
