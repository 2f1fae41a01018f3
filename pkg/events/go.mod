module github.com/kefu-io/kefu/pkg/events

go 1.21
