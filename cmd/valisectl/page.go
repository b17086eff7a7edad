package main

import (
	"context"
	"errors"
	"flag"
	"math"
)

// pageFlags are the flags of every list command.
type pageFlags struct {
	size  int
	token string
	all   bool
}

func (p *pageFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&p.size, "page-size", 0, "items per page; 0 means the node's default")
	fs.StringVar(&p.token, "page-token", "", "start at this page token")
	fs.BoolVar(&p.all, "all", false, "follow next_page_token to the last page")
}

// fetchPage gets one page of size items from token, and returns them with
// the token of the next page ("" on the last).
type fetchPage[T any] func(ctx context.Context, size int32, token string) (items []T, next string, err error)

// collect gets the page at p.token or, with --all, every page from there
// to the last. Each page is one call with its own --timeout. It returns
// the items and the token of the page after them ("" after the last).
func collect[T any](ctx context.Context, c *cli, p pageFlags, fetch fetchPage[T]) ([]T, string, error) {
	if p.size < 0 || p.size > math.MaxInt32 {
		return nil, "", usageErrorf("--page-size must be between 0 and %d", math.MaxInt32)
	}
	var all []T
	token := p.token
	for {
		callCtx, cancel := context.WithTimeout(ctx, c.g.timeout)
		items, next, err := fetch(callCtx, int32(p.size), token)
		cancel()
		if err != nil {
			return nil, "", err
		}
		all = append(all, items...)
		if !p.all || next == "" {
			return all, next, nil
		}
		if next == token {
			return nil, "", errors.New("the node returned the same page token twice; stopping")
		}
		token = next
	}
}

// call runs one RPC under --timeout.
func call[Resp any](ctx context.Context, c *cli, rpc func(ctx context.Context) (Resp, error)) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, c.g.timeout)
	defer cancel()
	return rpc(ctx)
}
