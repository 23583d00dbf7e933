// SPDX-License-Identifier: Apache-2.0 (the LICENSE file at the repository root)
module github.com/leveros/lever/sdk/go

go 1.24
