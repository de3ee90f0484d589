<?php

declare(strict_types=1);

namespace Ppy;

/** JSON-RPC error -32004. The process running the call died (segfault, os._exit, memory limit); the server replaced it. */
class WorkerCrashedException extends RemoteException
{
}
