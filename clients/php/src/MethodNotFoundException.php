<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32601. No such entry or function, or it is not exposed. */
class MethodNotFoundException extends RemoteException
{
}
