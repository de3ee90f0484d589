<?php

declare(strict_types=1);

namespace Ppy;

/**
 * JSON-RPC error -32005. The client cancelled the call (rpc.cancel) before it finished, as leaving
 * the foreach over Client::stream() early does; the items already sent stay sent.
 */
class CancelledException extends RemoteException
{
}
