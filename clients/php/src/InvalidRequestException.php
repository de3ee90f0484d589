<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32600. Not a valid JSON-RPC 2.0 request (e.g. an empty method name, a batch over the server's limit). */
class InvalidRequestException extends RemoteException
{
}
