// Command kefu runs the kefu customer-service pipeline; see `kefu help`.
package main

import (
	"os"

	"github.com/kefu-io/kefu/internal/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
