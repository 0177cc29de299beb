#!/usr/bin/env python3
"""tls_proxy.py - a TLS terminator on loopback for the dsa-bench TLS test.

    tls_proxy.py CERT KEY UPSTREAM_PORT PORT_FILE SNI_FILE

Accepts TLS on 127.0.0.1 (an ephemeral port, written to PORT_FILE once
listening), appends the SNI name each client sent to SNI_FILE (one line per
handshake, "-" when none), and relays the plaintext both ways to
127.0.0.1:UPSTREAM_PORT, as a load balancer's HTTPS listener does.  Runs
until killed.
"""
import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    cert, key, upstream, port_file, sni_file = sys.argv[1:6]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def on_sni(sock, name, _ctx):
        with open(sni_file, "a") as f:
            f.write((name or "-") + "\n")

    ctx.sni_callback = on_sni

    async def handle(reader, writer):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", int(upstream))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    import os
    os.replace(port_file + ".tmp", port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
