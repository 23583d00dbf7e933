module github.com/leveros/lever/sdk/go

go 1.24
