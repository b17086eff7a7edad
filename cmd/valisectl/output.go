package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// printJSON writes m as one JSON object on one line, with field names as
// in the .proto and every field present, so scripts need not guess at
// defaults.
func printJSON(w io.Writer, m proto.Message) error {
	opts := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
	b, err := opts.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// table writes aligned columns. Cells are passed through cell.
type table struct{ tw *tabwriter.Writer }

// newTable starts a table with the given header row, if any.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// cell makes s safe for a terminal table: "-" when empty, and quoted with
// escapes when it holds control characters (tabs, newlines, terminal
// escapes), which a node must not be able to inject into the admin's
// terminal.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// fmtTime formats ts as RFC 3339 in UTC, or "-" when absent.
func fmtTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// moreHint tells, on stderr, how to get the page after a partial listing.
func (c *cli) moreHint(next string) {
	if next != "" && !c.g.json {
		fmt.Fprintf(c.stderr, "valisectl: more results: add --page-token %s, or use --all\n", strconv.Quote(next))
	}
}

// done reports the outcome of a call with an empty response: the error, or
// the response as JSON with --json, or the formatted message. String
// arguments are passed through cell.
func (c *cli) done(resp proto.Message, err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	if c.g.json {
		return printJSON(c.stdout, resp)
	}
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = cell(s)
		}
	}
	_, err = fmt.Fprintf(c.stdout, format+"\n", args...)
	return err
}
