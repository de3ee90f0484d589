<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32002. The server has too many calls in flight or connections open; retry later (the call did not run). */
class OverloadedException extends RemoteException
{
}
