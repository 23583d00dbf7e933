// SPDX-License-Identifier: Apache-2.0 (the LICENSE file at the repository root)
module github.com/leveros/lever/examples/hello-go

go 1.24

require github.com/leveros/lever/sdk/go v0.0.0

replace github.com/leveros/lever/sdk/go => ../../sdk/go
