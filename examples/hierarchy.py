"""A speed-controlled cart: a parent system with a motor and a wheel as subsystems.

    motor (subsystem):  torque' = (cmd - torque) / tau
    wheel (subsystem):  omega'  = (torque - b * omega) / J
    cart (parent):      pos' = speed,  integral' = setpoint - speed,  speed = r * omega

The cart's PI controller sets the motor command from the cart's own state
``integral`` and the wheel's speed.  dynode steps subsystems before their parent
(motor, then wheel, then the cart), so every connection below reads values that
are already up to date in the same evaluation:

- motor pre-connection: the PI law (reads states and parameters only);
- wheel pre-connection: ``connect_signals`` from the motor's torque output;
- cart pre-connection: the wheel speed into the cart's ``speed`` input;
- cart post-connection: the mechanical power as an output of the cart.
"""

from dyngen import Simulation, System, connect_signals


class Motor(System):
    def __init__(self, tau=0.2):
        super().__init__()
        self.inputs.tau = tau
        self.inputs.cmd = 0.0
        self.states.torque = 0.0
        self.ders.torque = 0.0
        self.outputs.torque = 0.0

    def do_step(self, time):
        self.ders.torque = (self.inputs.cmd - self.states.torque) / self.inputs.tau
        self.outputs.torque = self.states.torque


class Wheel(System):
    def __init__(self, inertia=0.5, friction=0.1):
        super().__init__()
        self.inputs.inertia = inertia
        self.inputs.friction = friction
        self.inputs.torque = 0.0
        self.states.omega = 0.0
        self.ders.omega = 0.0
        self.outputs.omega = 0.0

    def do_step(self, time):
        omega = self.states.omega
        self.ders.omega = (self.inputs.torque - self.inputs.friction * omega) / self.inputs.inertia
        self.outputs.omega = omega


class Cart(System):
    def __init__(self, setpoint=2.0, kp=1.5, ki=0.8, radius=0.3):
        super().__init__()
        self.motor = Motor()
        self.wheel = Wheel()
        self.add_subsystem(self.motor)
        self.add_subsystem(self.wheel)

        self.inputs.setpoint = setpoint
        self.inputs.kp = kp
        self.inputs.ki = ki
        self.inputs.radius = radius
        self.inputs.speed = 0.0
        self.states.pos = 0.0
        self.states.integral = 0.0
        self.ders.pos = 0.0
        self.ders.integral = 0.0
        self.outputs.power = 0.0

        def pi_control(motor, t):
            error = self.inputs.setpoint - self.inputs.radius * self.wheel.states.omega
            motor.inputs.cmd = self.inputs.kp * error + self.inputs.ki * self.states.integral

        self.motor.add_pre_connection(pi_control)
        self.wheel.add_pre_connection(
            connect_signals(self.motor.outputs, "torque", self.wheel.inputs, "torque")
        )
        self.add_pre_connection(self.measure_speed)
        self.add_post_connection(self.compute_power)

    @staticmethod
    def measure_speed(cart, t):
        cart.inputs.speed = cart.inputs.radius * cart.wheel.outputs.omega

    @staticmethod
    def compute_power(cart, t):
        cart.outputs.power = cart.motor.outputs.torque * cart.wheel.outputs.omega

    def do_step(self, time):
        speed = self.inputs.speed
        self.ders.pos = speed
        self.ders.integral = self.inputs.setpoint - speed


def build():
    sim = Simulation()
    sim.add_system(Cart())
    return sim
