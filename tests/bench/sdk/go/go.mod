module github.com/leveros/lever/tests/bench/sdk/go

go 1.24

require github.com/leveros/lever/sdk/go v0.0.0

replace github.com/leveros/lever/sdk/go => ../../../../sdk/go
