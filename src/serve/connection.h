// Whether an HTTP client is still there while its request waits: cpp-httplib gives handlers no
// socket, so the connection is found by its peer address among this process's sockets.
#pragma once

#include <string>

namespace polar::serve {

// The descriptor of this process's TCP connection whose peer is ip:port, or -1.
int find_peer_socket(const std::string& ip, int port);
// Whether the peer of connection `fd` has closed or reset it (nothing is read from it).
bool peer_closed(int fd);

}  // namespace polar::serve
