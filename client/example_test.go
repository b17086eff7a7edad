package client_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/valise-im/valise/client"
)

// Alice logs in once, sends Bob a message, and reads her inbox. Later runs
// use client.Open with the same state directory instead of Login.
func Example() {
	ctx := context.Background()
	ca, err := os.ReadFile("node-ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	cfg := client.Config{
		Server:     "ministry-a.example:8443",
		RootCAsPEM: ca,
		StateDir:   "/home/alice/.valise",
	}
	c, err := client.Login(ctx, cfg, "alice@ministry-a.example", "alice's password", "laptop")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	res, err := c.Send(ctx, "bob@ministry-a.example", []byte("Lunch at noon?"), client.SendOptions{})
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range res.Warnings {
		log.Printf("WARNING: %s", w)
	}

	err = c.Receive(ctx, client.ReceiveOptions{OnWarning: func(w client.Warning) { log.Printf("WARNING: %s", w) }},
		func(m client.Message) error {
			fmt.Printf("%s %s: %s\n", m.Time.Format("15:04"), m.From, m.Body)
			return nil
		})
	if err != nil {
		log.Fatal(err)
	}
}
